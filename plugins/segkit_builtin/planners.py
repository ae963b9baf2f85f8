"""Built-in planner "auto" (``segkit run --recipe auto``): plans every setting from the dataset's
fingerprint, step timings on this machine and the time budget; the rules are in ``segkit.planning.auto``."""

import segkit
from segkit.planning.auto import plan_auto


@segkit.hookimpl
def register_planners(register):
    register(
        "auto",
        plan_auto,
        description="Plans the run from the data, this machine and --time-budget (default 15m; planning "
        "is allowed 3% of it, 3-30 s): resize or crops + tiles, sizes, batch, loss, schedule, inference; "
        "`segkit plan` shows it",
    )
