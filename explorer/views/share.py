"""Import & export: offline run bundles, a static HTML report, and GPT-2 folders in and out."""
from __future__ import annotations

import tempfile
from pathlib import Path

import streamlit as st

from explorer import report
from explorer.classroom import policy as classroom
from explorer.classroom import session as class_session
from explorer.ui.run_picker import all_runs, select_run, selected_run_info
from gpt.hf import cache as hf_cache
from gpt.hf import gpt2 as hf
from gpt.runs import RunError, atomic_write_json, bundle, checkpoints_root, run_path

st.title("Import & export")
st.caption("Share a run as one archive or a self-contained HTML report (opens with no network), bring an "
           "archive back, or move models between this app and the Hugging Face GPT-2 format.")

me = class_session.actor()
learner = class_session.active() and not me.teacher   # classroom mode: a learner's imports become their runs
export_tab, import_tab, gpt2_tab = st.tabs(["Export the selected run", "Import an archive", "GPT-2 folders"])

with export_tab:
    info = selected_run_info()
    if info is None:
        st.info("No run to export yet.")
    else:
        st.markdown(f"Selected run: **{info.name}** ({info.arch}, {info.params:,} parameters, step {info.step:,})")
        with_snapshots = st.checkbox("Include snapshots (time-machine views)", value=True)
        col_archive, col_report = st.columns(2)
        if col_archive.button("Build archive (.tar.gz)", icon=":material/archive:"):
            try:
                with tempfile.TemporaryDirectory() as tmp:
                    out = bundle.export_bundle(info.path, Path(tmp) / f"{info.name}.tar.gz", with_snapshots)
                    st.session_state["share_archive"] = (out.name, out.read_bytes())
            except (bundle.BundleError, RunError, OSError) as e:
                st.error(f"Could not build the archive: {e}")
        if col_report.button("Build HTML report", icon=":material/description:"):
            try:
                with st.spinner("Rendering the report..."):
                    st.session_state["share_report"] = (f"{info.name}-report.html",
                                                        report.report_html(info.path).encode("utf-8"))
            except (RunError, OSError, ValueError) as e:
                st.error(f"Could not build the report: {e}")
        archive = st.session_state.get("share_archive")
        if archive and archive[0].startswith(info.name):
            col_archive.download_button(f"Download {archive[0]} ({len(archive[1]) / 2**20:.1f} MB)", archive[1],
                                        file_name=archive[0], mime="application/gzip")
        page = st.session_state.get("share_report")
        if page and page[0].startswith(info.name):
            col_report.download_button(f"Download {page[0]} ({len(page[1]) / 2**20:.1f} MB)", page[1],
                                       file_name=page[0], mime="text/html")
        st.caption("The archive holds config, tokenizer, weights, metrics, samples and (optionally) snapshots, "
                   "each with a checksum; the report embeds plotly.js so it needs no network.")

with import_tab:
    uploaded = st.file_uploader("A run archive exported by GPT Explorer", type=["gz", "tgz", "zip"])
    new_name = st.text_input("Name for the imported run (empty: the archive's own name)", max_chars=64)
    if uploaded is not None and st.button("Import", icon=":material/unarchive:"):
        problem = None
        if learner:   # the archive's size stands for the run's: weights barely compress
            settings = class_session.settings()
            problem = ("Choose your name in the sidebar first: the imported run is kept under it."
                       if not me.learner_id else
                       classroom.quota_problem(settings, classroom.disk_usage(), me.learner_id, uploaded.size))
        if problem:
            class_session.refuse(classroom.Refused(problem))
            st.stop()
        suffix = ".zip" if uploaded.name.lower().endswith(".zip") else ".tar.gz"
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"upload{suffix}"
            path.write_bytes(uploaded.getvalue())
            try:
                target = bundle.import_bundle(path, name=new_name.strip() or None, root=checkpoints_root())
            except (bundle.BundleError, RunError, OSError) as e:
                st.error(f"Refused: {e}")
            else:
                if learner:
                    atomic_write_json(target / classroom.OWNER, classroom.owner_record(me))
                st.success(f"Imported as **{target.name}**; it is now selected in the sidebar.")
                select_run(target.name)
                st.rerun()
    st.caption("Archives are checked before anything lands in checkpoints/: paths must stay inside the run "
               "folder, only the expected files are accepted, checksums must match, and size is capped.")

with gpt2_tab:
    if learner:   # it reads and writes folders on the server's disk
        st.info("In the class, the teacher imports and exports GPT-2 folders on the server.")
        st.stop()
    st.markdown("**Load a GPT-2 model** from a local Hugging Face-format folder (`config.json`, "
                "`model.safetensors`, `vocab.json`, `merges.txt`). It becomes a run you can inspect "
                "(12×12 models: use the layer×head overview first, then one head at a time).")
    cached = hf_cache.cached_models()
    usable = [m.repo_id for m in cached if m.problem is None]
    if cached:
        st.markdown(f"GPT-2 models in your Hugging Face cache (`{hf_cache.hub_cache_dir()}`):")
        for m in cached:
            st.caption(f"**{m.repo_id}**" + (f": {m.problem}" if m.problem else f" · `{m.snapshot}`"))
    else:
        st.caption(f"No GPT-2 model in the Hugging Face cache (`{hf_cache.hub_cache_dir()}`; HF_HUB_CACHE or HF_HOME "
                   "move it). Nothing is downloaded here: " + hf_cache.how_to_get("gpt2") + ".")
    src = st.selectbox("Import", usable + ["a folder on this machine"], key="gpt2_source")
    if src not in usable:
        src = st.text_input("Folder on this machine", placeholder="/path/to/gpt2")
    name = st.text_input("Run name", value=(src.split("/")[-1] if src in usable else "gpt2-import"), max_chars=64)
    if st.button("Import GPT-2", icon=":material/download:", disabled=not src.strip()):
        try:
            target = run_path(name)
            with st.spinner("Reading weights..."):
                out = hf.import_gpt2(src.strip(), target)
        except (hf.HFError, RunError, OSError, ValueError) as e:
            st.error(f"Could not import: {e}")
        else:
            st.success(f"Imported as **{out.name}**.")
            select_run(out.name)
            st.rerun()
    st.divider()
    st.markdown("**Export the selected run** as a GPT-2 folder that `GPT2LMHeadModel.from_pretrained` loads "
                "with the same logits.")
    runs_available = [r.name for r in all_runs()]
    info = selected_run_info()
    if info is not None and runs_available:
        out_dir = checkpoints_root() / "exports" / f"{info.name}-gpt2"
        if st.button(f"Export {info.name} to {out_dir}", icon=":material/upload:"):
            try:
                hf.export_gpt2(info.path, out_dir)
            except (hf.HFError, RunError, OSError) as e:
                st.error(f"Could not export: {e}")
            else:
                st.success(f"Wrote {', '.join(sorted(p.name for p in out_dir.iterdir()))} to {out_dir}")
