"""Model URLs: which server, which protocol, which model.

::

    http://host:port/v2/models/NAME[/versions/VERSION]     HTTP/REST (https:// for TLS)
    grpc://host:port/v2/models/NAME[/versions/VERSION]     gRPC (grpcs:// for TLS)

The gRPC form borrows the REST path so that one model has the same URL but for the scheme; the
path is only read here, never sent (a gRPC call names the model in its message). An HTTP URL
may have a path prefix before ``/v2`` (a server behind a proxy); a gRPC URL may not.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

from neuropod.errors import PackageError

#: The URL schemes ``load_neuropod`` sends to a server, and the protocol of each.
SCHEMES = {"http": "http", "https": "http", "grpc": "grpc", "grpcs": "grpc"}

_DEFAULT_PORTS = {"http": 80, "https": 443, "grpc": 8001, "grpcs": 8001}
_FORM = "{scheme}://host:port/v2/models/NAME[/versions/VERSION]"


def is_remote_url(location: object) -> bool:
    """Whether ``location`` (what ``load_neuropod`` was given) is a model URL rather than a path."""
    if not isinstance(location, str):
        return False
    scheme, sep, _ = location.partition("://")
    return bool(sep) and scheme.lower() in SCHEMES


@dataclass(frozen=True)
class ModelURL:
    """A parsed model URL.

    Attributes:
        url: the URL as given.
        scheme: ``http``, ``https``, ``grpc`` or ``grpcs``.
        host: the server's host name or address (IPv6 without brackets).
        port: the server's port.
        prefix: the path before ``/v2`` (HTTP only; ``""`` for none).
        model: the model's name.
        version: the model's version, or ``""`` for the server's choice.
    """

    url: str
    scheme: str
    host: str
    port: int
    prefix: str
    model: str
    version: str

    @property
    def protocol(self) -> str:
        """``"http"`` or ``"grpc"``."""
        return SCHEMES[self.scheme]

    @property
    def tls(self) -> bool:
        """Whether the connection is encrypted."""
        return self.scheme in ("https", "grpcs")

    @property
    def authority(self) -> str:
        """``host:port``, with brackets around an IPv6 address."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def server(self) -> str:
        """The HTTP base URL of the server (scheme, authority and prefix)."""
        return f"{self.scheme}://{self.authority}{self.prefix}"

    @property
    def model_path(self) -> str:
        """The protocol path of the model: ``/v2/models/NAME[/versions/VERSION]``."""
        path = f"/v2/models/{quote(self.model, safe='')}"
        return f"{path}/versions/{quote(self.version, safe='')}" if self.version else path


def parse_model_url(url: str) -> ModelURL:
    """Parse a model URL (see the module docstring).

    Args:
        url: the URL.

    Returns:
        Its parts.

    Raises:
        PackageError: it is not a model URL of a supported scheme.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    form = _FORM.format(scheme=scheme or "http")
    if scheme not in SCHEMES:
        raise PackageError(f"{url!r} is not a model URL: its scheme must be one of {', '.join(SCHEMES)}")
    if parts.query or parts.fragment:
        raise PackageError(f"{url!r} is not a model URL: it has a query or fragment; expected {form}")
    try:
        port = parts.port
    except ValueError as exc:
        raise PackageError(f"{url!r} is not a model URL: {exc}") from None
    if not parts.hostname:
        raise PackageError(f"{url!r} is not a model URL: it names no host; expected {form}")
    path = parts.path.rstrip("/")
    prefix, sep, rest = path.rpartition("/v2/models/")
    segments = rest.split("/") if sep else []
    if (
        not segments
        or not segments[0]
        or len(segments) not in (1, 3)
        or (len(segments) == 3 and (segments[1] != "versions" or not segments[2]))
    ):
        raise PackageError(f"{url!r} is not a model URL: expected {form}")
    if prefix and SCHEMES[scheme] == "grpc":
        raise PackageError(
            f"{url!r} is not a model URL: a gRPC URL has no path before /v2 (got {prefix!r}); expected {form}"
        )
    return ModelURL(
        url=url,
        scheme=scheme,
        host=parts.hostname,
        port=port if port is not None else _DEFAULT_PORTS[scheme],
        prefix=prefix,
        model=unquote(segments[0]),
        version=unquote(segments[2]) if len(segments) == 3 else "",
    )
