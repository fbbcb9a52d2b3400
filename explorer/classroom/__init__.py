"""Classroom mode: the policy (who may see and change which run, quotas), the training queue, and the session
(who sits at this tab)."""
