#!/usr/bin/env python3
"""Failover benchmark for L2 announcements, side by side with keepalived (VRRP), in one lab.

    scripts/bench/l2-failover.py [--runs 20] [--modes cilia-default,cilia-fast,keepalived-default,keepalived-fast]

One lab, the guide's webpod as a LoadBalancer Service, announced from k8s-ctr or k8s-w1 (the two
nodes on the router's 192.168.10.0/24 segment). Each run:

1. the VIP's owner is k8s-w1 (for cilia the benchmark picks a VIP whose rendezvous owner is
   k8s-w1; for keepalived k8s-w1 is the MASTER), checked with arping from the router;
2. the router requests http://VIP/ every 20 ms (each request on its own connection, 100 ms
   timeout: scripts/bench/l2_probe.py) and captures ARP on its eth1;
3. k8s-w1 loses power: `cilia lab kill k8s-w1` (links down first, then every process on it);
4. failover time = from the moment the links went down to the first successful response of a
   request started after it;
5. k8s-w1 boots again (`cilia lab up`), and the VIP goes back to it; the capture covers that too.

Figures: p50 and p99 of the failover times per mode; from the router's capture (kill, takeover,
return of the node), the number of ARP requests for the VIP (one every 20 ms) that two MACs
answered: the target is none. Also the heartbeat (or VRRP advert) packets per second one node
sends with 1 and with 5 VIPs: cilia's must not grow with the number of VIPs.

Everything runs inside the lab's namespaces; nothing touches the root namespace's network.
"""

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CILIA = os.environ.get("CILIA", os.path.join(REPO, "target/release/cilia"))
VICTIM, OTHER = "k8s-w1", "k8s-ctr"
POOL = [f"192.168.10.{i}" for i in range(241, 251)]

MODES = {
    # (heartbeat interval, dead-after) for cilia; (VRRP version, advert interval) for keepalived.
    "cilia-default": ("100ms", "500ms"),
    "cilia-fast": ("20ms", "80ms"),
    "keepalived-default": (2, "1"),
    "keepalived-fast": (3, "0.03"),
}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def cilia(*args, check=True, stdin=None, timeout=300):
    r = subprocess.run([CILIA, *args], input=stdin, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"cilia {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")
    return r.stdout


def in_ns(host, *argv, check=True, timeout=60):
    return cilia("lab", "exec", host, "--", *argv, check=check, timeout=timeout)


def eventually(what, fn, timeout=60.0, every=0.2):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = fn()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - report the last error on timeout
            last = e
        time.sleep(every)
    raise RuntimeError(f"timed out waiting for {what}; last: {last}")


def mac_of(host, dev="eth1"):
    out = in_ns(host, "ip", "-j", "link", "show", dev)
    return json.loads(out)[0]["address"]


def arping_macs(vip, count=3):
    out = in_ns("router", "arping", "-I", "eth1", "-c", str(count), "-w", "2", vip, check=False)
    return set(m.lower() for m in re.findall(r"from ([0-9A-Fa-f:]{17})", out))


WEBPOD_SETUP = """
apiVersion: cilium.io/v2
kind: CiliumLoadBalancerIPPool
metadata: {name: bench-pool}
spec:
  blocks: [{start: "192.168.10.241", stop: "192.168.10.250"}]
"""

POLICY = """apiVersion: cilium.io/v2alpha1
kind: CiliumL2AnnouncementPolicy
metadata: {name: bench}
spec:
  serviceSelector: {matchLabels: {app: webpod}}
  nodeSelector:
    matchExpressions:
    - {key: kubernetes.io/hostname, operator: In, values: [k8s-w1, k8s-ctr]}
  interfaces: ["^eth[1-9]+"]
  loadBalancerIPs: true
"""


def extra_service(name, ip):
    return f"""apiVersion: v1
kind: Service
metadata:
  name: {name}
  labels: {{app: webpod}}
  annotations: {{lbipam.cilium.io/ips: "{ip}"}}
spec:
  type: LoadBalancer
  selector: {{app: webpod}}
  ports: [{{port: 80, targetPort: 80}}]
"""


def lb_ip(svc="webpod"):
    return cilia("get", "svc", svc, "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}").strip()


def set_vip(ip):
    cilia("annotate", "svc", "webpod", f"lbipam.cilium.io/ips={ip}", "--overwrite")
    eventually(f"webpod to get {ip}", lambda: lb_ip() == ip)


def holder():
    out = cilia("get", "lease", "cilium-l2announce-default-webpod", "-n", "kube-system",
                "-o", "jsonpath={.spec.holderIdentity}", check=False)
    return out.strip()


def setup_lab():
    log("lab up, webpod as LoadBalancer, tunnel routing, L2 announcements on")
    cilia("lab", "up")
    with open(os.path.join(REPO, "examples/guide/webpod.yaml")) as f:
        cilia("apply", "-f", "-", stdin=f.read())
    cilia("apply", "-f", "-", stdin=WEBPOD_SETUP)
    cilia("patch", "svc", "webpod", "-p", '{"spec":{"type":"LoadBalancer"}}')
    eventually("an LB IP", lambda: lb_ip().startswith("192.168.10."))
    cilia("config", "set", "routing-mode=tunnel", "auto-direct-node-routes=false",
          "kube-proxy-replacement=true", "enable-l2-announcements=true")


def cilia_mode(interval, dead_after):
    cilia("config", "set", f"l2-announcements-heartbeat-interval={interval}",
          f"l2-announcements-dead-after={dead_after}")
    cilia("apply", "-f", "-", stdin=POLICY)
    victim_mac = mac_of(VICTIM)
    # A VIP the rendezvous hash gives to the victim, so that every run kills the same node.
    for ip in POOL[:5]:
        set_vip(ip)
        try:
            eventually(f"an owner for {ip}", lambda: holder() in (VICTIM, OTHER) and arping_macs(ip), timeout=20)
        except RuntimeError:
            continue
        if holder() == VICTIM and arping_macs(ip) == {victim_mac}:
            return ip
    raise RuntimeError("no VIP in the pool is owned by k8s-w1")


KEEPALIVED_GLOBAL = """global_defs {{
  router_id {rid}
  vrrp_version {version}
}}
"""
KEEPALIVED_INSTANCE = """vrrp_instance VI_{n} {{
  state {state}
  interface eth1
  virtual_router_id {vrid}
  priority {prio}
  advert_int {advert}
  virtual_ipaddress {{
    {vip}/32 dev eth1
  }}
}}
"""


class Keepalived:
    """keepalived on k8s-w1 (MASTER, priority 150) and k8s-ctr (BACKUP, 100), one instance per VIP."""

    def __init__(self, lab, version, advert, vips):
        self.lab, self.version, self.advert, self.vips = lab, version, advert, vips
        self.dir = tempfile.mkdtemp(prefix="cilia-keepalived-")
        self.procs = {}

    def conf(self, host):
        master = host == VICTIM
        text = KEEPALIVED_GLOBAL.format(rid=host, version=self.version)
        for n, vip in enumerate(self.vips):
            text += KEEPALIVED_INSTANCE.format(
                n=n, state="MASTER" if master else "BACKUP", vrid=51 + n, prio=150 if master else 100,
                advert=self.advert, vip=vip)
        path = os.path.join(self.dir, f"{host}.conf")
        with open(path, "w") as f:
            f.write(text)
        return path

    def start(self, host):
        conf = self.conf(host)
        ns = f"{self.lab}-{host}"
        # A power loss leaves pid files behind; keepalived refuses to start over a live-looking one.
        for pid_file in (f"{host}.pid", f"{host}-vrrp.pid"):
            try:
                os.unlink(os.path.join(self.dir, pid_file))
            except FileNotFoundError:
                pass
        argv = ["ip", "netns", "exec", ns, "keepalived", "-n", "-l", "-P", "-f", conf,
                "-p", os.path.join(self.dir, f"{host}.pid"),
                "-r", os.path.join(self.dir, f"{host}-vrrp.pid")]
        log_file = open(os.path.join(self.dir, f"{host}.log"), "a")
        # A session of its own: stopping it takes its VRRP child process too.
        self.procs[host] = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self, host, sig=signal.SIGTERM):
        p = self.procs.pop(host, None)
        if not p:
            return
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            pass
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()

    def stop_all(self):
        for host in list(self.procs):
            self.stop(host)


def kill_victim():
    """Power loss of the victim; returns the Unix time its links went down."""
    before = time.time()
    out = cilia("lab", "kill", VICTIM)
    m = re.search(r"killed at \S+ \(unix (\d+\.\d+)\)", out)
    return float(m.group(1)) if m else before


def boot_victim():
    cilia("lab", "up")


def run_once(vip, owner_mac, on_killed=None, settle=None):
    """One failover; returns (failover seconds, requests answered by two MACs)."""
    since = tempfile.NamedTemporaryFile(prefix="cilia-l2-since-", delete=False)
    since.close()
    os.unlink(since.name)
    # `ip netns exec` execs the program itself, so signals reach it (`cilia lab exec` waits on it).
    router = ["ip", "netns", "exec", f"{os.environ['CILIA_LAB']}-router"]
    probe = subprocess.Popen(
        [*router, "python3", os.path.join(HERE, "l2_probe.py"), vip,
         "--since-file", since.name, "--duration", "60", "--hold", "0.3"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    capture = subprocess.Popen(
        [*router, "tcpdump", "-l", "-n", "-e", "-tt", "-i", "eth1", "arp"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    arping = subprocess.Popen(
        [*router, "arping", "-i", "eth1", "-W", "0.02", "-w", "120", vip],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    t0 = kill_victim()
    with open(since.name, "w") as f:
        f.write(f"{t0:.6f}")
    if on_killed:
        on_killed()
    out, _ = probe.communicate(timeout=90)
    os.unlink(since.name)
    oks = [float(e) for s, e, r in (l.split() for l in out.splitlines() if l.strip())
           if r == "ok" and float(s) >= t0]
    failover = (min(oks) - t0) if oks else float("nan")
    boot_victim()
    if settle:
        settle()
    time.sleep(1.0)
    arping.terminate()
    capture.terminate()
    text, _ = capture.communicate(timeout=10)
    arping.wait()
    return failover, answered_by_two(text, vip, t0)


def answered_by_two(tcpdump_text, vip, t0):
    """ARP requests for `vip` after t0 that were answered by more than one MAC: moments in which
    two nodes answered at once. Gratuitous (broadcast) replies are not answers to a request."""
    dual, answers, started = 0, None, False
    for line in tcpdump_text.splitlines():
        m = re.match(r"(\d+\.\d+) ([0-9a-f:]{17}) > ([0-9a-f:]{17}).*?: (Request who-has|Reply) (\S+)", line)
        if not m or m.group(5) != vip or float(m.group(1)) < t0:
            continue
        if m.group(4) == "Request who-has":
            if answers is not None and len(answers) > 1:
                dual += 1
            answers, started = set(), True
        elif started and m.group(3) != "ff:ff:ff:ff:ff:ff":
            answers.add(re.search(r"is-at ([0-9a-f:]{17})", line).group(1))
    if answers is not None and len(answers) > 1:
        dual += 1
    return dual


def pct(values, p):
    v = sorted(values)
    if not v:
        return float("nan")
    k = max(0, min(len(v) - 1, int(round(p / 100 * len(v) + 0.5)) - 1))
    return v[k]


def packets_per_second(host, bpf_filter, seconds=5):
    out = in_ns(host, "timeout", str(seconds), "tcpdump", "-n", "-i", "eth1", "-Q", "out", bpf_filter,
                check=False, timeout=seconds + 10)
    return len([l for l in out.splitlines() if l.strip()]) / seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--lab", default="l2bench")
    ap.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    a = ap.parse_args()
    os.environ["CILIA_LAB"] = a.lab
    os.environ.pop("CILIA_DATASTORE", None)
    results = {}
    try:
        setup_lab()
        for mode in a.modes.split(","):
            log(f"== {mode} ==")
            keepalived = None
            if mode.startswith("cilia"):
                vip = cilia_mode(*MODES[mode])
                settle = lambda: eventually(  # noqa: E731
                    "the VIP back on k8s-w1", lambda: arping_macs(vip) == {mac_of(VICTIM)}, timeout=60)
                on_killed = None
            else:
                cilia("delete", "ciliuml2announcementpolicy", "bench", check=False)
                vip = lb_ip()
                eventually("no L2 announcement left", lambda: not arping_macs(vip, 2), timeout=30)
                version, advert = MODES[mode]
                keepalived = Keepalived(a.lab, version, advert, [vip])
                keepalived.start(OTHER)
                keepalived.start(VICTIM)
                eventually("keepalived's MASTER on k8s-w1", lambda: arping_macs(vip) == {mac_of(VICTIM)}, timeout=30)

                def on_killed(k=keepalived):
                    k.stop(VICTIM, signal.SIGKILL)

                def settle(k=keepalived, v=vip):
                    k.start(VICTIM)
                    eventually("keepalived's MASTER back on k8s-w1", lambda: arping_macs(v) == {mac_of(VICTIM)}, 30)
            owner_mac = mac_of(VICTIM)
            times, dual = [], 0
            for i in range(a.runs):
                t, d = run_once(vip, owner_mac, on_killed, settle)
                times.append(t)
                dual += d
                log(f"  run {i + 1}: {t * 1000:.0f} ms, requests answered by two MACs: {d}")
            results[mode] = {"times": times, "dual": dual}
            # Advert/heartbeat traffic per node with 1 VIP and with 5.
            if mode.startswith("cilia"):
                flt = "udp port 4250"
                one = packets_per_second(VICTIM, flt)
                for n, ip in enumerate(POOL[5:9]):
                    cilia("apply", "-f", "-", stdin=extra_service(f"bench-extra-{n}", ip))
                for n in range(4):
                    eventually("extra LB IPs", lambda n=n: lb_ip(f"bench-extra-{n}"), timeout=30)
                five = packets_per_second(VICTIM, flt)
                for n in range(4):
                    cilia("delete", "svc", f"bench-extra-{n}", check=False)
            else:
                keepalived.stop_all()
                extra = [vip] + POOL[5:9]
                k5 = Keepalived(a.lab, *MODES[mode], [vip])
                k5.start(VICTIM)
                time.sleep(3)
                one = packets_per_second(VICTIM, "ip proto 112")
                k5.stop_all()
                k5 = Keepalived(a.lab, *MODES[mode], extra)
                k5.start(VICTIM)
                time.sleep(3)
                five = packets_per_second(VICTIM, "ip proto 112")
                k5.stop_all()
            results[mode]["pps"] = (one, five)
            if keepalived:
                keepalived.stop_all()
    finally:
        if not a.keep:
            cilia("lab", "down", check=False)

    print(f"\nL2 failover, {a.runs} runs per mode: power loss of the VIP's owner -> first HTTP answer from the router")
    print(f"{'mode':<20} {'p50 ms':>8} {'p99 ms':>8} {'min':>6} {'max':>6} {'2-MAC answers':>14} "
          f"{'adverts/s 1 VIP':>16} {'5 VIPs':>7}")
    for mode, r in results.items():
        ms = [t * 1000 for t in r["times"]]
        print(f"{mode:<20} {pct(ms, 50):>8.0f} {pct(ms, 99):>8.0f} {min(ms):>6.0f} {max(ms):>6.0f} "
              f"{r['dual']:>14} {r['pps'][0]:>16.1f} {r['pps'][1]:>7.1f}")
    base = results.get("keepalived-default"), results.get("cilia-default")
    if all(base):
        print(f"cilia-default p50 / keepalived-default p50: "
              f"{statistics.median(base[1]['times']) / statistics.median(base[0]['times']):.2f}x")
    fast = results.get("keepalived-fast"), results.get("cilia-fast")
    if all(fast):
        print(f"cilia-fast p50 / keepalived-fast p50: "
              f"{statistics.median(fast[1]['times']) / statistics.median(fast[0]['times']):.2f}x")


if __name__ == "__main__":
    main()
