"""Alerts (docs/alerts.md): a workspace's notification channels and the delivery of what
they want to hear — failed, timed-out, lost and recovered runs.

- `kinds`: pure — which alert an ended run makes, the channel kinds and their checks
- `messages`: pure — what an alert says, as a signed JSON body, a Slack message, an e-mail
- `outbox`: the rows written in the transaction that ends a run (called by the lifecycle's
  writer), so the run's end never waits on a network and a crash loses no alert
- `senders`: one attempt over HTTP or SMTP, bounded in time and in what is read back
- `delivery`: the loop that sends due rows, retries with backoff and records every attempt
"""
