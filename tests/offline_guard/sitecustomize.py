"""The test suite's offline guard: every Python process started through conftest.run_cli puts this folder on its
PYTHONPATH, so this module runs at its start-up and the process cannot reach the network. Loopback and Unix
sockets stay open (torch.distributed's rendezvous runs on 127.0.0.1); anything else raises at once, as on a
machine without network, instead of hanging on a timeout."""
import errno
import ipaddress
import socket

MESSAGE = "offline test guard: no network"
_connect, _connect_ex, _getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo


def _local(host) -> bool:
    if host is None or host in ("", "localhost"):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:   # a host name other than localhost: resolving it would need DNS
        return False


def _refuse(what) -> OSError:
    return OSError(errno.ENETUNREACH, f"{MESSAGE} ({what!r} refused)")


def connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _local(address[0]):
        raise _refuse(address)
    return _connect(self, address)


def connect_ex(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _local(address[0]):
        raise _refuse(address)
    return _connect_ex(self, address)


def getaddrinfo(host, *args, **kwargs):
    if not _local(host.decode() if isinstance(host, bytes) else host):
        raise socket.gaierror(socket.EAI_NONAME, f"{MESSAGE} (name {host!r} not resolved)")
    return _getaddrinfo(host, *args, **kwargs)


socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo
