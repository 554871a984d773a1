#!/usr/bin/python3
"""Subscribers stay connected when the machine's routes and addresses change.

This file owns the check that nothing in pg_ws's stack cuts subscribers
off because the routing table changed.  libwebsockets 4.3 built with
netlink (Debian 13 and testing) keeps its own, partial copy of the routing
table and closes every connection whose peer it finds no route to in it,
whenever a route or an address is added or removed: a default route
without a gateway (a VPN or point-to-point link) is one it cannot use,
and an address added to an IPv6 interface drops its copy of that
interface's prefix route.  pg_ws keeps libwebsockets from doing so
(worker.c, hold_lws_system_state).

To change routes without touching the machine's, the suite first moves
itself into a network namespace of its own (unshare(CLONE_NEWNET), as
root), where the clusters it starts live too; each subscriber runs in a
namespace of its own (unshare --net) on the far end of a veth pair, as a
peer on another machine would.

  a. a subscriber whose only route is a default route without gateway
     (10.88.0.1/32 on a veth, "default dev"): a route is added elsewhere
     and an address removed; it still gets the next event;
  b. a subscriber over IPv6 on a /64 with no IPv6 gateway: an address is
     added to the interface; it still gets the next event.

Each also checks that the subscriber is still listed by
pg_ws_connections().

Run as root: /usr/bin/python3 test/e2e/test_network.py   (TAP output)
"""

import asyncio
import ctypes
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Cluster, Ctx, Fail, asql, check, compare_idents, run_tap  # noqa: E402

CLONE_NEWNET = 0x40000000
EMP = "INSERT INTO employee (id, first_name, last_name) VALUES (%d, 'n', 'n')"

# the subscriber, in a network namespace of its own (unshare --net): once
# told, it sets up its end of the veth with the ip commands it is given,
# subscribes, and prints a line for what it is sent and when it is closed
CLIENT = r"""
import asyncio, subprocess, sys, warnings
warnings.filterwarnings('ignore', category=DeprecationWarning)
from websockets.legacy.client import connect
sys.stdin.readline()
for cmd in sys.argv[1].split(';'):
    subprocess.run(['ip'] + cmd.split(), check=True)
async def main():
    ws = await connect(sys.argv[2], ping_interval=None, open_timeout=10)
    print('ready', flush=True)
    try:
        async for m in ws:
            print('message ' + m, flush=True)
    except Exception as e:
        print('error %r' % e, flush=True)
    print('closed %s' % ws.close_code, flush=True)
asyncio.run(main())
"""


def ip(*args):
    r = subprocess.run(['ip', *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
    if r.returncode != 0:
        raise Fail('ip %s: %s' % (' '.join(args), r.stdout.strip()))


def own_network():
    """Move this process (and the clusters it starts) into a new network
    namespace with loopback up."""
    if os.geteuid() != 0:
        raise Fail('needs root: unshare(CLONE_NEWNET) and ip')
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        raise Fail('unshare(CLONE_NEWNET): %s' % os.strerror(ctypes.get_errno()))
    ip('link', 'set', 'lo', 'up')


class RemoteSubscriber:
    """The CLIENT process, on the far end of a veth pair."""

    def __init__(self, proc):
        self.proc = proc
        self.lines = []

    @classmethod
    async def start(cls, peer_dev, peer_setup, url):
        proc = await asyncio.create_subprocess_exec(
            'unshare', '--net', '--', '/usr/bin/python3', '-c', CLIENT, peer_setup, url,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT)
        self = cls(proc)
        try:
            # unshare execs python3: the pid is the namespace's, once
            # unshare has made it (until then moving the device there
            # would leave it here)
            ours = os.readlink('/proc/self/ns/net')
            deadline = time.monotonic() + 10
            while True:
                try:
                    if os.readlink('/proc/%d/ns/net' % proc.pid) != ours:
                        break
                except OSError:
                    pass
                check(time.monotonic() < deadline, 'the subscriber has no namespace of its own')
                await asyncio.sleep(0.01)
            ip('link', 'set', peer_dev, 'netns', str(proc.pid))
            proc.stdin.write(b'go\n')
            await proc.stdin.drain()
            await self.expect('ready', 20)
        except BaseException:
            self.stop()
            raise
        return self

    async def expect(self, prefix, timeout):
        """The next line, which must start with prefix."""
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        except asyncio.TimeoutError:
            raise Fail('the remote subscriber said nothing in %d s (waiting for %s); before: %s'
                       % (timeout, prefix, self.lines[-3:]))
        line = line.decode().rstrip('\n')
        self.lines.append(line)
        check(line.startswith(prefix), 'the remote subscriber: %r, expected %s...; before: %s'
              % (line, prefix, self.lines[-4:-1]))
        return line[len(prefix):].strip()

    def stop(self):
        if self.proc.returncode is None:
            self.proc.kill()


async def started(ctx, name, address):
    """A cluster whose worker listens on loopback and address, and lets
    anonymous subscribers in by any host name (the address's)."""
    cl = Cluster(name=name, conf=["pg_ws.listen_addresses = '127.0.0.1,%s'" % address,
                                  "pg_ws.allow_anonymous = on"])
    ctx.use(cl)
    await asyncio.to_thread(cl.start)
    await cl.install()
    return cl


async def survives(ctx, remote, change, ident):
    """The remote subscriber gets an event, change() runs, and it is still
    there and gets the next one."""
    conn = await ctx.aconn()
    try:
        await asql(conn, EMP % ident)
        first = json.loads(await remote.expect('message', 10))
        check(first['data']['id'] == ident, 'before the change: %s' % first)
        change()
        # a whole handshake after it: the worker has read what the kernel
        # told it of the change (queued before ip returned) by then
        local = await ctx.sub()
        await asql(conn, EMP % (ident + 1))
        compare_idents(await local.expect(1, 10, 'local subscriber'),
                       [('employee_create', ident + 1)], 'local')
        second = json.loads(await remote.expect('message', 10))
        check(second['data']['id'] == ident + 1, 'after the change: %s' % second)
        rows = await asql(conn, "SELECT count(*) FROM pg_ws_connections"
                                " WHERE state = 'subscribed' AND NOT peer << '127.0.0.0/8'")
        check(rows[0][0] == 1, 'pg_ws_connections lists %d remote subscribers' % rows[0][0])
    finally:
        remote.stop()


async def test_default_route_without_gateway(ctx):
    """a. a peer reached by a default route without a gateway."""
    ip('link', 'add', 'pgwsA1', 'type', 'veth', 'peer', 'name', 'pgwsB1')
    ip('addr', 'add', '10.88.1.1/32', 'dev', 'pgwsA1')
    ip('link', 'set', 'pgwsA1', 'up')
    ip('route', 'add', 'default', 'dev', 'pgwsA1')
    cl = await started(ctx, 'v4', '10.88.1.1')
    remote = await RemoteSubscriber.start(
        'pgwsB1', 'link set lo up;link set pgwsB1 up;addr add 10.88.1.2/32 dev pgwsB1;'
        'route add default dev pgwsB1', 'ws://10.88.1.1:%d/ws/' % cl.wsport)

    def change():
        ip('route', 'add', '192.0.2.0/24', 'dev', 'lo')
        ip('addr', 'add', '198.51.100.7/32', 'dev', 'lo')
        ip('addr', 'del', '198.51.100.7/32', 'dev', 'lo')

    await survives(ctx, remote, change, 1000)
    return 'a route added, an address added and removed: the subscriber stayed and got the event'


async def test_ipv6_address_added(ctx):
    """b. an IPv6 peer on a /64 without a gateway; an address is added."""
    ip('link', 'add', 'pgwsA2', 'type', 'veth', 'peer', 'name', 'pgwsB2')
    ip('-6', 'addr', 'add', 'fd00:88::1/64', 'dev', 'pgwsA2', 'nodad')
    ip('link', 'set', 'pgwsA2', 'up')
    cl = await started(ctx, 'v6', 'fd00:88::1')
    remote = await RemoteSubscriber.start(
        'pgwsB2', 'link set lo up;link set pgwsB2 up;-6 addr add fd00:88::2/64 dev pgwsB2 nodad',
        'ws://[fd00:88::1]:%d/ws/' % cl.wsport)

    def change():
        ip('-6', 'addr', 'add', 'fd00:88::10/64', 'dev', 'pgwsA2', 'nodad')

    await survives(ctx, remote, change, 2000)
    return 'an IPv6 address added: the subscriber stayed and got the event'


TESTS = [
    ('(a) a default route without gateway, then a route and an address change: '
     'the subscriber stays', test_default_route_without_gateway, 90),
    ('(b) IPv6 without a gateway, then an address added: the subscriber stays',
     test_ipv6_address_added, 90),
]


if __name__ == '__main__':
    own_network()
    run_tap(TESTS, Ctx)
