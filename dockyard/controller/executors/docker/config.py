"""What every part of the Docker executor shares: its configuration, the container paths a
run sees, and the network settings both image builds and runs pass on."""

import os
from dataclasses import dataclass, field
from pathlib import Path

ENV_REPO = "dockyard-env"
SERVER_LABEL = "dockyard.server"  # on images and containers: the id of the server that made them
CA_PATH = "/etc/ssl/certs/ca-certificates.crt"
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")
PATH = "/env/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class DockerConfig:
    base_image: str
    network: str = "bridge"
    ca_bundle: str | None = None
    keep_images: int = 5
    beacon_url: str = ""
    image_repo: str = ENV_REPO
    state_dir: Path | None = None  # where image use times are kept (the data directory)
    runs_dir: Path | None = None  # run directories (an `exit.json` there: the run ended)
    user: str = field(default_factory=lambda: f"{os.getuid()}:{os.getgid()}")
    uid_base: int | None = None  # as root: a workspace's runs use uid_base + workspace id


def network_environment(config: DockerConfig) -> dict[str, str]:
    """The server's proxies and, when one is configured, the CA bundle's container path."""
    env = {k: os.environ[k] for k in PROXY_VARS if k in os.environ}
    if config.ca_bundle:
        env.update(SSL_CERT_FILE=CA_PATH, REQUESTS_CA_BUNDLE=CA_PATH, PIP_CERT=CA_PATH)
    return env
