"""The webhook side of the server, made once from the controller: the processing loop (and,
once item 3 of issue 12 lands, the `deploy_head` it is given). `web/asgi.py` mounts the
receiver's router, keeps this on `app.state.webhooks` and starts and stops the loop with
the controller's own loops."""

from dockyard.controller.assembly import Controller
from dockyard.webhooks.processing import Processor


class Webhooks:
    def __init__(self, ctl: Controller) -> None:
        self.ctl = ctl
        self.processor = Processor(ctl.db, ctl.keys, ctl.clock)

    def start(self) -> None:
        self.processor.recover()  # what a crash left half-done goes back to received
        self.processor.start()

    def stop(self) -> None:
        self.processor.stop()
