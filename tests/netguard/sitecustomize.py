"""Refuse every non-loopback network connection in this Python process and its children.

Put this folder on PYTHONPATH (the site tests do) to prove a run needs no network: any
attempt to connect elsewhere raises immediately instead of hanging or succeeding.
"""

import ipaddress
import socket

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_local(address) -> bool:
    if not isinstance(address, tuple):  # AF_UNIX paths and the like
        return True
    host = address[0]
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False  # a host name other than localhost: would need DNS and the network


def _guarded_connect(self, address):
    if not _is_local(address):
        raise ConnectionRefusedError(
            f"network disabled by tests/netguard: refused connection to {address!r}"
        )
    return _real_connect(self, address)


def _guarded_connect_ex(self, address):
    if not _is_local(address):
        raise ConnectionRefusedError(
            f"network disabled by tests/netguard: refused connection to {address!r}"
        )
    return _real_connect_ex(self, address)


socket.socket.connect = _guarded_connect
socket.socket.connect_ex = _guarded_connect_ex
