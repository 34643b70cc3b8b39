"""The verification's echo waits for a peer that answers late (a loaded host) and reports a
peer that never answers."""

import os
import subprocess
import sys

import pytest
from ansible_collections.weave.fastdp.plugins.module_utils.netns import entered
from ansible_collections.weave.fastdp.plugins.module_utils.status import echo

pytestmark = pytest.mark.netns

# Answers each ICMP echo request 2.5 s late, as a host whose kernel does not.
LATE_RESPONDER = """
import socket, struct, threading, time
from ansible_collections.weave.fastdp.plugins.module_utils.status import _checksum
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
def answer(data, source):
    time.sleep(2.5)
    reply = bytearray(data[(data[0] & 0x0F) * 4:])
    reply[0], reply[2:4] = 0, b"\\0\\0"
    reply[2:4] = struct.pack("!H", _checksum(bytes(reply)))
    s.sendto(bytes(reply), source)
print("ready", flush=True)
while True:
    data, source = s.recvfrom(2048)
    if data[(data[0] & 0x0F) * 4] == 8:
        threading.Thread(target=answer, args=(data, source), daemon=True).start()
"""


def test_a_peer_answering_after_2_5_s_is_answered_and_a_silent_one_is_not(lab_factory):
    lab = lab_factory(count=2, sshd=False)
    a, b = lab.hosts
    lab.exec(b, "sysctl", "-qw", "net.ipv4.icmp_echo_ignore_all=1")
    with entered(a.netns):
        assert echo([b.address]) == set(), "b's kernel ignores echoes: nothing answers"
    responder = subprocess.Popen(["ip", "netns", "exec", b.netns, sys.executable, "-c",
                                  LATE_RESPONDER], stdout=subprocess.PIPE, text=True,
                                 env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert responder.stdout.readline().strip() == "ready"
        with entered(a.netns):
            assert echo([b.address]) == {b.address}
    finally:
        responder.kill()
        responder.wait()
