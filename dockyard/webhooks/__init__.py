"""GitHub webhooks: the receiver `POST /webhooks/github/<hook id>` and the loop that
processes what it stored (docs/github.md).

The receiver is thin on purpose: it finds the link by the URL alone, checks the signature
over the raw body before parsing a byte of it, classifies the event, stores the delivery and
answers 202. Everything slow (fetching, building, deploying) happens later in
`processing.Processor`, from the stored row, so a crash after the 202 loses nothing and
GitHub's 10-second budget is never at risk.

Layer: between `web` (which mounts the router and starts the loop) and `controller` (whose
store, keys and loop this package uses); the controller never imports it.
"""
