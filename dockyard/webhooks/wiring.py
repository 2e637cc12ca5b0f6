"""The webhook side of the server, made once from the controller: the processing loop and
what it does for a push (`deploying.deploy_head`: deploy the branch head fetched now).
`web/asgi.py` mounts the receiver's router, keeps this on `app.state.webhooks` and starts
and stops the loop with the controller's own loops."""

from dockyard.controller.assembly import Controller
from dockyard.webhooks import deploying, hooksecrets
from dockyard.webhooks.processing import Processor


class Webhooks:
    def __init__(self, ctl: Controller) -> None:
        self.ctl = ctl
        self.secrets = hooksecrets.HookSecrets()  # links' webhook secrets, opened once
        self.processor = Processor(
            ctl.db, ctl.keys, ctl.clock, deploy_head=deploying.deploy_head(ctl)
        )

    def start(self) -> None:
        self.processor.recover()  # what a crash left half-done goes back to received
        self.processor.start()

    def stop(self) -> None:
        self.processor.stop()
