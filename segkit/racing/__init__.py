"""The race: ``--recipe auto`` measures its candidate plans on the data before it commits to one.

A layer of its own above the engine, the planner and reporting (it trains with the first, reads the
second's plan and scores with the third): ``segkit run`` and ``segkit.train`` start every new run
through ``train``, which is ``segkit.engine.trainer.fit`` unless the plan holds a race
(``plan.facts["race"]``, made by ``segkit.planning.auto``). Then each candidate trains as an ordinary
run folder, paused at the end of its slice (``fit(..., pause_at_s=)``), is scored on the valid split
at original resolution, and the better half goes on to the next round (successive halving); the
winner resumes with its weights and its schedule to the end of the budget, and the losers' folders
move into the winner's ``race/`` (their metrics and settings kept, their checkpoints deleted).
``plan.json`` in the winner's folder records every candidate, its scores and its cost.
"""

from segkit.racing.race import race_record, score_of_summary, train

__all__ = ["race_record", "score_of_summary", "train"]
