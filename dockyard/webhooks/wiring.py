"""The webhook side of the server, made once from the controller: the processing loop and
what it does for a push (`deploying.deploy_head`: deploy the branch head fetched now), and
the sweeper that records what webhooks missed (`sweeper.py`; off when
DOCKYARD_GITHUB_SWEEP_S is 0; with several servers, only the holder of the `github-sweep`
lease sweeps). `web/asgi.py` mounts the receiver's router, keeps this on
`app.state.webhooks` and starts and stops the loops with the controller's own loops."""

from dockyard.controller import leases
from dockyard.controller.assembly import Controller
from dockyard.webhooks import deploying, feedback, hooksecrets, planning
from dockyard.webhooks.processing import Processor
from dockyard.webhooks.sweeper import Sweeper


class Webhooks:
    def __init__(self, ctl: Controller) -> None:
        self.ctl = ctl
        self.secrets = hooksecrets.HookSecrets()  # links' webhook secrets, opened once
        self.processor = Processor(
            ctl.db,
            ctl.keys,
            ctl.clock,
            deploy_head=deploying.deploy_head(ctl),
            plan_head=planning.plan_head(ctl),
            feedback=feedback.StatusFeedback(base_url=ctl.settings.base_url),
            credentials=ctl.github_credentials,
        )
        every = ctl.settings.github_sweep_s
        lease = ctl.leases.guard(leases.GITHUB_SWEEP) if every > 0 else None
        self.sweeper = Sweeper(
            ctl.db, ctl.github_credentials, ctl.clock, every, self.processor.wake, lease=lease
        )
        if lease is not None:
            lease.on_acquired(self.sweeper.wake)

    def start(self) -> None:
        self.processor.recover()  # what a crash left half-done goes back to received
        self.processor.start()
        if self.ctl.settings.github_sweep_s > 0:
            self.sweeper.start()

    def stop(self) -> None:
        self.sweeper.stop()
        self.processor.stop()
