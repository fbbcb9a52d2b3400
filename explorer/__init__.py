"""GPT Explorer: the Streamlit app built on the gpt/ library (`streamlit run explorer/app.py`).

Pages live in explorer/views/ (not pages/: that folder name would switch on Streamlit's legacy multipage mode).
"""
