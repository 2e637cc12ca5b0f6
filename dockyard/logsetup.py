"""Server logging: one line per event, with the structured fields (`action`, ids) appended."""

import logging

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        extra = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        if not extra:
            return base
        return base + " " + " ".join(f"{k}={v}" for k, v in sorted(extra.items()))


def configure(level: str = "info") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(KeyValueFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request's URL at INFO: the app proxy's upstream paths and queries (what
    # users type into apps), the GitHub API's and alert channels' URLs (a Slack URL is a
    # credential). They are seen only when the server logs at DEBUG.
    quiet = logging.DEBUG if root.level <= logging.DEBUG else logging.WARNING
    logging.getLogger("httpx").setLevel(quiet)
