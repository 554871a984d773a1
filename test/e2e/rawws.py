"""HTTP and WebSocket on raw sockets, for tests that send what well-behaved
clients never send.

Not a test itself.  Independent of libwebsockets and of python-websockets:
every byte on the wire is built and parsed here, following RFC 6455 and
RFC 9112 directly, so that pg_ws's answers are checked by a second
implementation.

  - http_exchange(): send raw bytes, read the answer (or the close);
  - parse_response(): an HTTP response's status, headers and body;
  - upgrade_request(): the bytes of a WebSocket upgrade request;
  - RawWs: a WebSocket connection that can send any frame (unmasked,
    reserved bits, fragmented control frames, lying lengths) and reads the
    server's frames, close code and reason included.
"""

import base64
import hashlib
import os
import socket
import struct
import time

GUID = b'258EAFA5-E914-47DA-95CA-C5AB0DC85B11'

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


def connect(port, source=None, timeout=10, host='127.0.0.1'):
    """A TCP connection to host:port, from source (an address) if given."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if source:
            s.bind((source, 0))
        s.settimeout(timeout)
        s.connect((host, port))
        return s
    except BaseException:
        s.close()
        raise


def read_head(s):
    """What the server sends up to the end of its answer's head (the blank
    line; what came with it after that too), or until it closes."""
    data = b''
    while b'\r\n\r\n' not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def read_until_closed(s, timeout):
    """Everything the server sends until it closes (or timeout); (bytes,
    closed?).  A reset counts as closed."""
    data = b''
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s.settimeout(max(0.05, min(1.0, deadline - time.monotonic())))
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


def parse_response(data):
    """(status, reason, headers {lower name: value}, body, status line) of
    an HTTP response; status None when data holds no complete head."""
    head, sep, body = data.partition(b'\r\n\r\n')
    if not sep:
        return None, None, {}, b'', data[:80]
    lines = head.decode('latin-1').split('\r\n')
    status_line = lines[0]
    parts = status_line.split(' ', 2)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(':')
        headers[name.strip().lower()] = value.strip()
    try:
        status = int(parts[1])
    except (IndexError, ValueError):
        status = None
    return status, parts[2] if len(parts) > 2 else '', headers, body, status_line


def http_exchange(port, raw, timeout=10, source=None):
    """Send raw bytes and read until the server closes: (status, headers,
    body, status line, closed?)."""
    s = connect(port, source=source, timeout=timeout)
    try:
        if raw:
            s.sendall(raw)
        data, closed = read_until_closed(s, timeout)
    finally:
        s.close()
    status, _, headers, body, line = parse_response(data)
    return status, headers, body, line, closed


def upgrade_request(port, path='/ws/', key=None, extra=(), version='13',
                    upgrade='websocket', method='GET', http='HTTP/1.1'):
    """The bytes of a WebSocket upgrade request (extra: header lines)."""
    key = key or base64.b64encode(os.urandom(16)).decode()
    lines = ['%s %s %s' % (method, path, http),
             'Host: 127.0.0.1:%d' % port,
             'Upgrade: %s' % upgrade,
             'Connection: Upgrade',
             'Sec-WebSocket-Key: %s' % key,
             'Sec-WebSocket-Version: %s' % version]
    lines += list(extra)
    return ('\r\n'.join(lines) + '\r\n\r\n').encode()


def accept_for(key):
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


class Rejected(Exception):
    """The server answered the upgrade with something other than 101."""

    def __init__(self, status, headers, body, line):
        super().__init__('HTTP %s: %s' % (status, line))
        self.status, self.headers, self.body, self.line = status, headers, body, line


class RawWs:
    """A WebSocket connection on a raw socket."""

    def __init__(self, port, path='/ws/', extra=(), source=None, timeout=10):
        self.key = base64.b64encode(os.urandom(16)).decode()
        self.sock = connect(port, source=source, timeout=timeout)
        self.buf = b''
        try:
            self.sock.sendall(upgrade_request(port, path, self.key, extra))
            while b'\r\n\r\n' not in self.buf:
                chunk = self.sock.recv(4096)
                if not chunk:
                    break
                self.buf += chunk
            head, _, self.buf = self.buf.partition(b'\r\n\r\n')
            status, _, headers, _, line = parse_response(head + b'\r\n\r\n')
            if status != 101:
                body, _ = read_until_closed(self.sock, 2)
                raise Rejected(status, headers, self.buf + body, line)
            if headers.get('sec-websocket-accept') != accept_for(self.key):
                raise Rejected(status, headers, b'', 'bad Sec-WebSocket-Accept')
            self.headers = headers
        except BaseException:
            self.sock.close()
            raise

    def send_frame(self, opcode, payload=b'', fin=True, mask=True, rsv=0,
                   declared_len=None):
        """Send one frame exactly as asked: mask=False sends it unmasked,
        rsv sets reserved bits (0..7), declared_len lies about the length."""
        n = len(payload) if declared_len is None else declared_len
        b0 = (0x80 if fin else 0) | (rsv & 7) << 4 | opcode
        mbit = 0x80 if mask else 0
        if n < 126:
            head = struct.pack('!BB', b0, mbit | n)
        elif n < 65536:
            head = struct.pack('!BBH', b0, mbit | 126, n)
        else:
            head = struct.pack('!BBQ', b0, mbit | 127, n)
        if mask:
            key = os.urandom(4)
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
            head += key
        self.sock.sendall(head + payload)

    def send_text(self, text):
        self.send_frame(OP_TEXT, text.encode() if isinstance(text, str) else text)

    def _need(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError('no frame within the time allowed')
            self.sock.settimeout(min(1.0, left))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                chunk = b''
            if not chunk:
                raise EOFError('the server closed the connection')
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv_frame(self, timeout=10):
        """The server's next frame: (fin, opcode, payload).  Server frames
        must not be masked."""
        deadline = time.monotonic() + timeout
        b0, b1 = self._need(2, deadline)
        if b1 & 0x80:
            raise ValueError('the server sent a masked frame')
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack('!H', self._need(2, deadline))[0]
        elif n == 127:
            n = struct.unpack('!Q', self._need(8, deadline))[0]
        return bool(b0 & 0x80), b0 & 0x0F, self._need(n, deadline)

    def read_close(self, timeout=10):
        """Read frames until the server's close frame: (code, reason, data
        frames before it); code None if it closed without one."""
        frames = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                fin, op, payload = self.recv_frame(max(0.1, deadline - time.monotonic()))
            except EOFError:
                return None, None, frames
            if op == OP_CLOSE:
                if len(payload) >= 2:
                    return (struct.unpack('!H', payload[:2])[0],
                            payload[2:].decode('utf-8', 'replace'), frames)
                return 1005, '', frames
            frames.append((op, payload))

    def closed_by_server(self, timeout=10):
        """Does the server close the TCP connection (after its close frame)?"""
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return False
            except ConnectionResetError:
                return True
            if not chunk:
                return True
        return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
