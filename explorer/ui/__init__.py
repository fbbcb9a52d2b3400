"""What the pages share: token text, the run picker, prompts, the learner's place (state), caches, scans,
the evaluation text, the feature card."""
