"""Automatic rollouts: every newly pushed version is a candidate that live checks promote or
abort.

The embedded server runs the loop (`controller.py`) beside its poller: a version that
appears on disk is loaded and warmed as the *candidate* beside the serving *champion*, gets
the first step's share of the bare-URL traffic through the canary split
(`serving.traffic`), and every interval the two versions' windows (`window.py`: requests,
failures, latencies, output samples, measured over the same seconds) are compared
(`checks.py`). A failing interval counts toward the policy's threshold (`policy.py`); a
passing one moves to the next step; passing the last step promotes. The state and every
decision are JSON files beside the models.config (`records.py`), so a restart resumes at
the same step and `mlops rollout status` reads them without a server.

In shadow mode the champion answers everything and the candidate's share is run beside
it, only measured. Labels posted later (`serving.labels`) are joined to the answers by
request key for the online accuracy check; checks judged outside the server (`mlops skew
--rollout`) arrive as files (`records.py`). With the real tensorflow_model_server on
Kubernetes, Flagger runs the rollout (`serving.deployment`) and `webhook.py` offers it the
divergence check.

The edits go through `serving.operations` (the same `mlops canary / promote / abort`
edits), so the files stay TF Serving's own. The data plane reports to `window.Monitor`
only; this package imports no protocol adapter, and nothing of `pipeline/`.
"""
