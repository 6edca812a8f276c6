#!/usr/bin/env python3
"""Side-by-side benchmark: backendtls-sidecar vs nginx proxy_ssl, same TLS backend, same run.

Started by bench/run.sh (which installs the tools and publishes the AOT binary). Standard library only.
Methodology (docs/performance.md): one bed with every contender up at once, a validity gate first,
interleaved rounds with the order rotated each round, per-round values and per-round ratios, medians.
Everything listens on 127.0.0.1; every process started here is killed at the end.
"""

import argparse
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CONF = os.path.join(HERE, "conf")
CLK = os.sysconf("SC_CLK_TCK")
HOST = "backend.test"
BODY = ("backend-tls-bench " * 64)[:1023] + "\n"  # 1024 bytes
assert len(BODY) == 1024
SVC = "backend.bench.svc.cluster.local:8443"


# ----------------------------------------------------------------------------------------------
# Processes: every child gets its own session, so its whole tree is killed by its process group.

class Procs:
    def __init__(self):
        self.live = []  # (name, Popen)

    def start(self, name, cmd, log_path, env=None):
        log = open(log_path, "ab")
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env=env, start_new_session=True)
        log.close()
        self.live.append((name, p))
        return p

    def stop(self, p, sig=signal.SIGTERM, wait=3.0):
        """SIGTERM the child's process group, SIGKILL after `wait` s. Returns seconds to exit."""
        t0 = time.perf_counter()
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(timeout=5)
        took = time.perf_counter() - t0
        # workers left in the group (nginx) go too
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.live = [(n, q) for (n, q) in self.live if q is not p]
        return took

    def stop_all(self):
        for _, p in reversed(list(self.live)):
            self.stop(p, wait=2.0)


PROCS = Procs()


def on_signal(signum, _frame):
    raise SystemExit(128 + signum)


# ----------------------------------------------------------------------------------------------
# /proc helpers

def proc_stat_fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    return s[s.rfind(")") + 2:].split()  # fields from #3 (state) on


def tree(pid):
    """pid and all its descendants."""
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(proc_stat_fields(d)[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d))
    out = [pid]
    i = 0
    while i < len(out):
        out.extend(children.get(out[i], []))
        i += 1
    return out


def cpu_ticks(pid):
    """utime+stime (clock ticks) summed over the process tree."""
    total = 0
    for p in tree(pid):
        try:
            f = proc_stat_fields(p)
            total += int(f[11]) + int(f[12])
        except (OSError, IndexError, ValueError):
            pass
    return total


def mem_kib(pid):
    """(VmRSS, VmHWM) in KiB summed over the process tree, and the per-process breakdown."""
    rss = hwm = 0
    parts = []
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                st = dict(line.split(":", 1) for line in f if ":" in line)
            r = int(st["VmRSS"].split()[0])
            h = int(st["VmHWM"].split()[0])
        except (OSError, KeyError, ValueError):
            continue
        rss += r
        hwm += h
        parts.append((p, r))
    return rss, hwm, parts


def sockets_open(pid):
    n = 0
    for p in tree(pid):
        try:
            for fd in os.listdir(f"/proc/{p}/fd"):
                try:
                    if os.readlink(f"/proc/{p}/fd/{fd}").startswith("socket:"):
                        n += 1
                except OSError:
                    pass
        except OSError:
            pass
    return n


def machine_ticks():
    """(busy, total) ticks over all CPUs from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    total = sum(v[:8])
    return total - idle, total


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------------------------
# Small HTTP helpers

def get(port, host, timeout=5.0):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", "/", headers={"Host": host})
        r = c.getresponse()
        body = r.read()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), body
    finally:
        c.close()


def wait_http(port, path, want=200, timeout=15.0):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", path)
            r = c.getresponse()
            r.read()
            c.close()
            if r.status == want:
                return True
            last = r.status
        except OSError as e:
            last = e
        time.sleep(0.02)
    raise RuntimeError(f"127.0.0.1:{port}{path} not {want} within {timeout}s (last: {last})")


def wait_port(port, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.01)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def fill(template_name, **values):
    with open(os.path.join(CONF, template_name)) as f:
        text = f.read()
    for k, v in values.items():
        text = text.replace("{{" + k + "}}", str(v))
    left = re.findall(r"\{\{[A-Z_]+\}\}", text)
    if left:
        raise RuntimeError(f"{template_name}: unfilled {left}")
    return text


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


# ----------------------------------------------------------------------------------------------
# The bed

class Bed:
    def __init__(self, args, work, out):
        self.args, self.work, self.out = args, work, out
        self.ports = {}
        self.targets = {}  # name -> dict(port, proc, kind)

    def port(self, name):
        if name not in self.ports:
            p = free_port()
            while p in self.ports.values():
                p = free_port()
            self.ports[name] = p
        return self.ports[name]

    # -- PKI: private CA + ECDSA P-256 leaf for backend.test; a second CA for the wrong-CA check
    def pki(self):
        w = self.work
        ec = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]
        for ca, cn in (("ca", "bench test CA"), ("other-ca", "bench unrelated CA")):
            run(["openssl", "genpkey", *ec, "-out", f"{w}/{ca}.key"])
            run(["openssl", "req", "-x509", "-new", "-key", f"{w}/{ca}.key", "-sha256", "-days", "2",
                 "-subj", f"/CN={cn}", "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", f"{w}/{ca}.pem"])
        run(["openssl", "genpkey", *ec, "-out", f"{w}/backend.key"])
        run(["openssl", "req", "-new", "-key", f"{w}/backend.key", "-subj", f"/CN={HOST}", "-out", f"{w}/backend.csr"])
        write(f"{w}/leaf.ext", f"subjectAltName=DNS:{HOST}\nbasicConstraints=CA:FALSE\n"
                               "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
        run(["openssl", "x509", "-req", "-in", f"{w}/backend.csr", "-CA", f"{w}/ca.pem", "-CAkey", f"{w}/ca.key",
             "-set_serial", "1", "-days", "2", "-sha256", "-extfile", f"{w}/leaf.ext", "-out", f"{w}/backend.crt"])
        os.makedirs(f"{w}/empty-cert-dir", exist_ok=True)

    def backend(self):
        w = self.work
        conf = f"{w}/backend.conf"
        write(conf, fill("backend.conf", WORK=w, BACKEND_PORT=self.port("backend"), BODY=BODY.replace("\n", "\\n")))
        p = PROCS.start("backend", ["nginx", "-e", f"{w}/backend-error.log", "-c", conf, "-g", "daemon off;"],
                        f"{self.out}/backend.log")
        wait_port(self.port("backend"))
        self.backend_proc = p
        # direct verified HTTPS: proves the PKI before any proxy is involved
        bp = self.port("backend")
        r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", "--max-time", "5",
                            "--cacert", f"{w}/ca.pem", "--resolve", f"{HOST}:{bp}:127.0.0.1", f"https://{HOST}:{bp}/"],
                           capture_output=True, text=True)
        if r.stdout.strip() != "200 1024":
            raise RuntimeError(f"backend check failed: curl says {r.stdout!r} {r.stderr!r}")
        return p

    def nginx_conf(self, path, port, pid_file, error_log, rejects=True):
        w = self.work
        extra = ""
        if rejects:
            extra = fill("proxy-reject.conf", WHY="expected name wrong.test", TAG="badname", BACKEND_PORT=self.port("backend"),
                         PORT=self.port("nginx-badname"), CA_FILE=f"{w}/ca.pem", SSL_NAME="wrong.test")
            extra += fill("proxy-reject.conf", WHY="CA that did not sign the backend", TAG="badca", BACKEND_PORT=self.port("backend"),
                          PORT=self.port("nginx-badca"), CA_FILE=f"{w}/other-ca.pem", SSL_NAME=HOST)
        write(path, fill("proxy.conf", WORK=w, PID_FILE=pid_file, ERROR_LOG=error_log, BACKEND_PORT=self.port("backend"),
                         PROXY_PORT=port, REJECT_SERVERS=extra))

    def nginx_cmd(self, conf, error_log):
        return ["nginx", "-e", error_log, "-c", conf, "-g", "daemon off;"]

    def render(self):
        w = self.work

        def indent(path):
            with open(path) as f:
                return "".join("    " + line for line in f.read().splitlines(True))

        write(f"{w}/manifests.yaml", fill("manifests.yaml", CA_PEM=indent(f"{w}/ca.pem")))
        write(f"{w}/manifests-reject.yaml", fill("manifests-reject.yaml", CA_PEM=indent(f"{w}/ca.pem"),
                                                 OTHER_CA_PEM=indent(f"{w}/other-ca.pem")))
        for name in ("manifests", "manifests-reject"):
            r = run([self.args.sidecar_bin, "render", "-f", f"{w}/{name}.yaml", "-o", f"{w}/{name}-config"])
            write(f"{self.out}/render-{name}.txt", r.stdout + r.stderr)

    def sidecar_cmd(self, config, port, admin, resolve_names=("backend",)):
        cmd = [self.args.sidecar_bin, "--config-dir", config, "--listen", f"127.0.0.1:{port}",
               "--admin", f"127.0.0.1:{admin}"]
        for n in resolve_names:
            cmd += ["--resolve", f"{n}.bench.svc.cluster.local:8443:127.0.0.1:{self.port('backend')}"]
        return cmd

    def sidecar_env(self, variant):
        env = dict(os.environ)
        for k in list(env):
            if k.startswith("DOTNET_") or k.startswith("BACKENDTLS_") or k in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
                del env[k]
        if variant == "threadpool":
            # the sidecar completes socket I/O inline by default; this variant measures the lever off
            env["DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS"] = "0"
        if variant == "cacert":
            env["SSL_CERT_FILE"] = f"{self.work}/ca.pem"
            env["SSL_CERT_DIR"] = f"{self.work}/empty-cert-dir"
        return env

    def start_contenders(self):
        w = self.work
        self.nginx_conf(f"{w}/proxy.conf", self.port("nginx"), f"{w}/proxy.pid", f"{w}/proxy-error.log")
        p = PROCS.start("nginx", self.nginx_cmd(f"{w}/proxy.conf", f"{w}/proxy-error.log"), f"{self.out}/nginx.log")
        self.targets["nginx"] = dict(port=self.port("nginx"), proc=p, kind="nginx")

        variants = ["default"] + (["threadpool"] if self.args.threadpool else [])
        for v in variants:
            name = "sidecar" if v == "default" else f"sidecar-{v}"
            cmd = self.sidecar_cmd(f"{w}/manifests-config", self.port(name), self.port(name + "-admin"))
            p = PROCS.start(name, cmd, f"{self.out}/{name}.log", env=self.sidecar_env(v))
            self.targets[name] = dict(port=self.port(name), proc=p, kind="sidecar", admin=self.port(name + "-admin"))

        # the reject twin: only for the gate, stopped right after it
        cmd = self.sidecar_cmd(f"{w}/manifests-reject-config", self.port("sidecar-reject"), self.port("sidecar-reject-admin"),
                               resolve_names=("backend-badname", "backend-badca"))
        self.reject_proc = PROCS.start("sidecar-reject", cmd, f"{self.out}/sidecar-reject.log", env=self.sidecar_env("default"))

        wait_port(self.port("nginx"))
        for name, t in self.targets.items():
            if t["kind"] == "sidecar":
                wait_http(t["admin"], "/healthz/ready")
        wait_http(self.port("sidecar-reject-admin"), "/healthz/ready")

    # -- validity gate -----------------------------------------------------------------------
    def gate(self):
        checks = []

        def check(label, port, host, want_status, want_reason=None, want_body=True):
            try:
                status, headers, body = get(port, host)
            except OSError as e:
                checks.append((label, False, f"error {e}"))
                return
            reason = headers.get("x-backendtls-error")
            ok = status == want_status
            if want_reason is not None:
                ok = ok and reason == want_reason
            if want_status == 200 and want_body:
                ok = ok and body == BODY.encode()
            seen = f"{status}" + (f" {reason}" if reason else "") + (f", {len(body)} B" if status == 200 else "")
            checks.append((label, ok, seen))

        for name, t in self.targets.items():
            check(f"{name}: Host {HOST}, good config -> 200 + 1 KiB body", t["port"], HOST, 200)
        check("nginx: proxy_ssl_name wrong.test -> 502", self.port("nginx-badname"), HOST, 502)
        check("nginx: trusted CA that did not sign -> 502", self.port("nginx-badca"), HOST, 502)
        check("sidecar: policy hostname wrong.test -> 502 hostname_mismatch", self.port("sidecar-reject"), "wrong.test",
              502, "hostname_mismatch")
        check("sidecar: policy CA that did not sign -> 502 untrusted_root", self.port("sidecar-reject"), HOST,
              502, "untrusted_root")
        self.first_response_at = time.time()
        PROCS.stop(self.reject_proc)
        return checks


# ----------------------------------------------------------------------------------------------
# Load runs

UNIT = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def parse_wrk(text):
    def lat(pct):
        m = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
        return float(m.group(1)) * UNIT[m.group(2)] if m else None

    req = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", text)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    non2 = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return dict(requests=int(req.group(1)) if req else 0, rps=float(rps.group(1)) if rps else 0.0,
                p50_ms=lat(50), p99_ms=lat(99), non2xx=int(non2.group(1)) if non2 else 0,
                socket_errors=sum(int(x) for x in sock.groups()) if sock else 0)


def measured(fn, watch):
    """Run fn() and account CPU: the watched trees, the load generator (a waited-for child), the machine."""
    before = {k: cpu_ticks(p.pid) for k, p in watch.items()}
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    mb0, mt0 = machine_ticks()
    t0 = time.perf_counter()
    result = fn()
    elapsed = time.perf_counter() - t0
    mb1, mt1 = machine_ticks()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    after = {k: cpu_ticks(p.pid) for k, p in watch.items()}
    cpu = {k: (after[k] - before[k]) / CLK for k in watch}
    loadgen = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    busy = (mb1 - mb0) / CLK
    cpu["loadgen"] = loadgen
    # CPU seconds nobody of ours accounts for: other processes on the box (and some kernel work).
    cpu["unattributed"] = max(0.0, busy - sum(cpu.values()))
    return result, cpu, elapsed


def wrk_run(bed, name, duration, log_dir, rnd):
    t = bed.targets[name]
    cmd = ["wrk", "-t1", "-c32", f"-d{duration}s", "--latency", "--timeout", "5s", "-H", f"Host: {HOST}",
           f"http://127.0.0.1:{t['port']}/"]
    watch = {"proxy": t["proc"], "backend": bed.backend_proc}

    def go():
        return subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30)

    r, cpu, elapsed = measured(go, watch)
    with open(f"{log_dir}/wrk-r{rnd}-{name}.txt", "w") as f:
        f.write(" ".join(cmd) + "\n" + r.stdout + r.stderr)
    w = parse_wrk(r.stdout)
    rss, hwm, _ = mem_kib(t["proc"].pid)
    n = max(w["requests"], 1)
    return dict(round=rnd, target=name, **w,
                cpu_us_per_req=cpu["proxy"] * 1e6 / n, backend_cpu_us_per_req=cpu["backend"] * 1e6 / n,
                loadgen_cpu_s=cpu["loadgen"], unattributed_cpu_cores=cpu["unattributed"] / elapsed,
                proxy_cpu_cores=cpu["proxy"] / elapsed,
                rss_after_mib=rss / 1024, hwm_mib=hwm / 1024, sockets=sockets_open(t["proc"].pid))


def pct(sorted_vals, p):
    if not sorted_vals:
        return None
    k = min(len(sorted_vals) - 1, max(0, int(round(p / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


def h2load_run(bed, name, duration, log_dir, rnd):
    log = f"{log_dir}/h2load-r{rnd}-{name}.log"
    base = ["h2load", "--h1", "-c16", "-t1", "--rps", "125", "-D", str(duration), f"--log-file={log}"]
    if name == "direct-https":
        bp = bed.port("backend")
        # client does TLS itself (no verification: h2load cannot verify), SNI backend.test
        cmd = base + [f"--connect-to=127.0.0.1:{bp}", f"https://{HOST}:{bp}/"]
        watch = {"backend": bed.backend_proc}
    else:
        t = bed.targets[name]
        # h2load's way to set the HTTP/1.1 Host (a literal "Host:" header is sent as a second one)
        cmd = base + ["-H", f":authority: {HOST}", f"http://127.0.0.1:{t['port']}/"]
        watch = {"proxy": t["proc"], "backend": bed.backend_proc}
    if os.path.exists(log):
        os.unlink(log)

    def go():
        return subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30)

    r, cpu, elapsed = measured(go, watch)
    with open(f"{log_dir}/h2load-r{rnd}-{name}.txt", "w") as f:
        f.write(" ".join(cmd) + "\n" + r.stdout + r.stderr)
    durs, bad = [], 0
    with open(log) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3:
                if parts[1] != "200":
                    bad += 1
                durs.append(int(parts[2]))
    durs.sort()
    n = max(len(durs), 1)
    res = dict(round=rnd, target=name, requests=len(durs), non200=bad, rps=len(durs) / duration,
               p50_ms=pct(durs, 50) / 1000, p90_ms=pct(durs, 90) / 1000, p99_ms=pct(durs, 99) / 1000,
               p999_ms=pct(durs, 99.9) / 1000, max_ms=durs[-1] / 1000 if durs else None,
               backend_cpu_us_per_req=cpu["backend"] * 1e6 / n,
               unattributed_cpu_cores=cpu["unattributed"] / elapsed)
    if "proxy" in cpu:
        res["cpu_us_per_req"] = cpu["proxy"] * 1e6 / n
    return res


# ----------------------------------------------------------------------------------------------
# Startup: exec -> port open -> first proxied 200 on a new connection (includes the first verified
# backend handshake). Each run is a fresh process on fresh ports; polling every 0.5 ms.

REQ = f"GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode()


def first_200(port, t0, timeout=15.0):
    port_open = None
    while time.perf_counter() - t0 < timeout:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            time.sleep(0.0005)
            continue
        if port_open is None:
            port_open = time.perf_counter() - t0
        try:
            s.sendall(REQ)
            buf = b""
            while b"\r\n" not in buf:
                chunk = s.recv(4096)
                if not chunk:
                    break
                buf += chunk
        except OSError:
            buf = b""
        finally:
            s.close()
        if buf.startswith(b"HTTP/1.1 200"):
            return port_open, time.perf_counter() - t0
        time.sleep(0.0005)
    return port_open, None


def startup(bed, kind, variant, runs, log_dir):
    out = []
    w = bed.work
    for i in range(runs):
        port = free_port()
        if kind == "nginx":
            conf, pid, err = f"{w}/startup-{i}.conf", f"{w}/startup-{i}.pid", f"{w}/startup-{i}-error.log"
            bed.nginx_conf(conf, port, pid, err, rejects=False)
            cmd, env = bed.nginx_cmd(conf, err), None
        else:
            admin = free_port()
            while admin == port:
                admin = free_port()
            cmd, env = bed.sidecar_cmd(f"{w}/manifests-config", port, admin), bed.sidecar_env(variant)
        t0 = time.perf_counter()
        p = PROCS.start(f"startup-{kind}-{variant}", cmd, f"{log_dir}/startup-{kind}-{variant}.log", env=env)
        port_open, first = first_200(port, t0)
        rss = mem_kib(p.pid)[0] / 1024
        stop_s = PROCS.stop(p, wait=5.0)
        out.append(dict(port_open_ms=port_open * 1000 if port_open else None,
                        first_200_ms=first * 1000 if first else None, rss_mib=rss, stop_s=stop_s))
        time.sleep(0.1)
    return out


# ----------------------------------------------------------------------------------------------
# Reporting

def fmt(v, spec=".2f", none="-"):
    return none if v is None else format(v, spec)


def ratio_stats(pairs):
    """pairs: per-round (sidecar, nginx) values -> (median ratio, min, max)."""
    rs = [a / b for a, b in pairs if a is not None and b not in (None, 0)]
    if not rs:
        return None
    return statistics.median(rs), min(rs), max(rs)


def versions(sidecar_bin):
    def sh(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
            return (r.stdout + r.stderr).strip()
        except (OSError, subprocess.TimeoutExpired):
            return "?"
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "nginx": sh(["nginx", "-v"]).replace("nginx version: ", ""),
        "openssl": sh(["openssl", "version"]),
        "wrk": sh(["wrk", "-v"]).splitlines()[0] if sh(["wrk", "-v"]) else "?",
        "h2load": sh(["h2load", "--version"]),
        "dotnet_sdk": sh(["dotnet", "--version"]),
        "kernel": platform.release(),
        "cpu": f"{os.cpu_count()} x {cpu}",
        "sidecar_bin": sidecar_bin,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sidecar-bin", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk and h2load run")
    ap.add_argument("--startup-runs", type=int, default=7)
    ap.add_argument("--no-threadpool", dest="threadpool", action="store_false",
                    help="skip the variant with inline socket completions off (DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS=0)")
    ap.add_argument("--no-direct", dest="direct", action="store_false", help="skip the direct-HTTPS baseline")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--keep", action="store_true", help="keep the temporary work dir (PKI, configs)")
    ap.add_argument("--label", default="")
    ap.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                    help="wait up to S seconds for the box to be idle (< 0.3 cores busy) before starting")
    args = ap.parse_args()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = os.path.join(args.out, stamp)
    os.makedirs(out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="btls-bench-")
    os.chmod(work, 0o755)  # nginx workers (www-data) may need to traverse it
    os.makedirs(f"{work}/tmp", exist_ok=True)
    started = time.time()
    try:
        code = bench(args, work, out, started)
    finally:
        PROCS.stop_all()
        if args.keep:
            print(f"work dir kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    sys.exit(code)


def say(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def bench(args, work, out, started):
    bed = Bed(args, work, out)
    info = versions(args.sidecar_bin)
    if args.wait_quiet > 0:
        deadline = time.time() + args.wait_quiet
        while True:
            b0, _ = machine_ticks()
            time.sleep(1.0)
            b1, _ = machine_ticks()
            busy = (b1 - b0) / CLK
            if busy < 0.3 or time.time() > deadline:
                say(f"box busy {busy:.2f} cores" + (" -- starting anyway" if busy >= 0.3 else ", starting"))
                break
            say(f"box busy {busy:.2f} cores (someone else's build?), waiting")
            time.sleep(4.0)
    started = time.time()  # wall time counts from here (not the wait for a quiet box)
    info["loadavg_at_start"] = open("/proc/loadavg").read().split()[:3]
    say(f"results -> {out}")
    say("PKI (private CA, ECDSA P-256 leaf for backend.test), backend nginx, render configs")
    bed.pki()
    bed.backend()
    bed.render()
    say("starting contenders")
    bed.start_contenders()

    say("validity gate")
    checks = bed.gate()
    for label, ok, seen in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {label:64s} got {seen}")
    if not all(ok for _, ok, _ in checks):
        print("validity gate FAILED: no figures are reported for a proxy that does not verify (or does not work)")
        json.dump(dict(info=info, gate=checks), open(f"{out}/results.json", "w"), indent=1)
        return 2

    # idle RSS, 2 s after the first proxied response
    time.sleep(max(0.0, 2.0 - (time.time() - bed.first_response_at)))
    idle = {}
    for name, t in bed.targets.items():
        rss, hwm, parts = mem_kib(t["proc"].pid)
        idle[name] = dict(rss_mib=rss / 1024, hwm_mib=hwm / 1024, processes=len(parts))
    # what the machine does without us: unattributed CPU over 2 s of idle
    _, idle_cpu, el = measured(lambda: time.sleep(2.0), {k: t["proc"] for k, t in bed.targets.items()})
    info["unattributed_cpu_cores_idle"] = idle_cpu["unattributed"] / el
    say(f"idle RSS MiB: " + ", ".join(f"{k} {v['rss_mib']:.1f}" for k, v in idle.items())
        + f"; other load on the box at idle: {info['unattributed_cpu_cores_idle']:.2f} cores")

    # startup
    say(f"startup: exec -> first proxied 200, {args.startup_runs} runs each")
    start = {
        "nginx": startup(bed, "nginx", "default", args.startup_runs, out),
        "sidecar": startup(bed, "sidecar", "default", args.startup_runs, out),
        "sidecar-cacert": startup(bed, "sidecar", "cacert", args.startup_runs, out),
    }
    for k, v in start.items():
        say(f"  {k:16s} first 200 median {fmt(med([r['first_200_ms'] for r in v]), '.1f')} ms "
            f"(port open {fmt(med([r['port_open_ms'] for r in v]), '.1f')} ms; runs: "
            + " ".join(fmt(r['first_200_ms'], '.0f') for r in v) + ")")

    names = list(bed.targets)  # nginx, sidecar, [sidecar-threadpool]
    wrk_res, h2_res = [], []
    for rnd in range(args.rounds):
        order = names[rnd % len(names):] + names[:rnd % len(names)]
        for name in order:
            say(f"wrk round {rnd + 1}/{args.rounds}: {name}")
            r = wrk_run(bed, name, args.duration, out, rnd)
            wrk_res.append(r)
            say(f"  {r['rps']:.0f} rps, p50 {fmt(r['p50_ms'])} p99 {fmt(r['p99_ms'])} ms, "
                f"{r['cpu_us_per_req']:.1f} us CPU/req, RSS {r['rss_after_mib']:.1f} MiB, errors {r['non2xx'] + r['socket_errors']}, "
                f"other load {r['unattributed_cpu_cores']:.2f} cores")
            time.sleep(1)
    h2_names = (["direct-https"] if args.direct else []) + names
    for rnd in range(args.rounds):
        order = h2_names[rnd % len(h2_names):] + h2_names[:rnd % len(h2_names)]
        for name in order:
            say(f"h2load round {rnd + 1}/{args.rounds}: {name}")
            r = h2load_run(bed, name, args.duration, out, rnd)
            h2_res.append(r)
            say(f"  {r['rps']:.0f} rps, p50 {fmt(r['p50_ms'], '.3f')} p99 {fmt(r['p99_ms'], '.3f')} "
                f"p99.9 {fmt(r['p999_ms'], '.3f')} max {fmt(r['max_ms'], '.1f')} ms, non-200 {r['non200']}"
                + (f", {r['cpu_us_per_req']:.1f} us CPU/req" if 'cpu_us_per_req' in r else ""))
            time.sleep(1)

    final = {}
    for name, t in bed.targets.items():
        rss, hwm, _ = mem_kib(t["proc"].pid)
        final[name] = dict(rss_mib=rss / 1024, hwm_mib=hwm / 1024)

    # sidecar's own view: how many verified handshakes (pool size) for the whole run
    metrics = {}
    for name, t in bed.targets.items():
        if t["kind"] == "sidecar":
            try:
                c = http.client.HTTPConnection("127.0.0.1", t["admin"], timeout=5)
                c.request("GET", "/metrics")
                text = c.getresponse().read().decode()
                c.close()
                metrics[name] = [l for l in text.splitlines() if l.startswith("backendtls_upstream_handshakes_total")
                                 or l.startswith("backendtls_upstream_connections_open")]
            except OSError as e:
                metrics[name] = [f"error {e}"]

    binary = os.path.getsize(args.sidecar_bin)
    logs = {name: os.path.getsize(f"{out}/{name}.log") for name in bed.targets}
    results = dict(info=info, args=vars(args), gate=checks, idle=idle, final=final, startup=start, wrk=wrk_res,
                   h2load=h2_res, binary_bytes=binary, sidecar_metrics=metrics, log_bytes=logs,
                   wall_s=time.time() - started)
    with open(f"{out}/results.json", "w") as f:
        json.dump(results, f, indent=1)
    report = summarize(results, names, h2_names)
    with open(f"{out}/summary.txt", "w") as f:
        f.write(report)
    print()
    print(report)
    return 0


def summarize(R, names, h2_names):
    L = []
    info, rounds = R["info"], R["args"]["rounds"]
    L.append(f"BackendTLS sidecar vs nginx proxy_ssl -- {time.strftime('%Y-%m-%d %H:%M %Z')}, {rounds} round(s) x "
             f"{R['args']['duration']} s, wall {R['wall_s']:.0f} s")
    L.append(f"box: {info['cpu']}, kernel {info['kernel']}; {info['openssl']}; nginx {info['nginx']}; "
             f"{info['wrk']}; {info['h2load']}; dotnet SDK {info['dotnet_sdk']}")
    L.append(f"load avg at start {' '.join(info['loadavg_at_start'])}; CPU used by others at idle "
             f"{info['unattributed_cpu_cores_idle']:.2f} cores")
    L.append("validity gate: PASS (" + "; ".join(f"{l.split(':')[0]} {s}" for l, ok, s in R["gate"][len(names):]) + ")")
    L.append("")

    def per(rows, target, key):
        return [r.get(key) for r in rows if r["target"] == target]

    W, H = R["wrk"], R["h2load"]
    L.append("Closed loop: wrk -t1 -c32 --latency (median over rounds; per-round values in results.json)")
    L.append(f"  {'target':16s} {'rps':>9s} {'p50 ms':>8s} {'p99 ms':>8s} {'proxy CPU':>10s} {'backend CPU':>12s} "
             f"{'proxy':>6s} {'other load':>10s} {'errors':>7s}")
    L.append(f"  {'':16s} {'':>9s} {'':>8s} {'':>8s} {'us/req':>10s} {'us/req':>12s} {'cores':>6s} {'cores':>10s} {'':>7s}")
    for n in names:
        L.append(f"  {n:16s} {fmt(med(per(W, n, 'rps')), ',.0f'):>9s} {fmt(med(per(W, n, 'p50_ms'))):>8s} "
                 f"{fmt(med(per(W, n, 'p99_ms'))):>8s} {fmt(med(per(W, n, 'cpu_us_per_req')), '.1f'):>10s} "
                 f"{fmt(med(per(W, n, 'backend_cpu_us_per_req')), '.1f'):>12s} {fmt(med(per(W, n, 'proxy_cpu_cores'))):>6s} "
                 f"{fmt(med(per(W, n, 'unattributed_cpu_cores'))):>10s} "
                 f"{sum(r['non2xx'] + r['socket_errors'] for r in W if r['target'] == n):>7d}")
    L.append("  per round rps: " + "; ".join(f"{n} " + "/".join(fmt(x, '.0f') for x in per(W, n, 'rps')) for n in names))
    L.append("")
    L.append("Fixed rate: h2load --h1 -c16 -t1 --rps 125 (2000 rps), latency from --log-file (median over rounds)")
    L.append(f"  {'target':16s} {'rps':>6s} {'p50 ms':>8s} {'p90 ms':>8s} {'p99 ms':>8s} {'p99.9 ms':>9s} {'max ms':>8s} "
             f"{'proxy CPU':>10s} {'+p50 ms':>8s} {'+p99 ms':>8s} {'non-200':>8s}")
    base50 = {r["round"]: r["p50_ms"] for r in H if r["target"] == "direct-https"}
    base99 = {r["round"]: r["p99_ms"] for r in H if r["target"] == "direct-https"}

    def added(n, key, base):
        return [r[key] - base[r["round"]] for r in H if r["target"] == n and r["round"] in base]

    for n in h2_names:
        a50 = med(added(n, "p50_ms", base50)) if n != "direct-https" else None
        a99 = med(added(n, "p99_ms", base99)) if n != "direct-https" else None
        L.append(f"  {n:16s} {fmt(med(per(H, n, 'rps')), '.0f'):>6s} {fmt(med(per(H, n, 'p50_ms')), '.3f'):>8s} "
                 f"{fmt(med(per(H, n, 'p90_ms')), '.3f'):>8s} {fmt(med(per(H, n, 'p99_ms')), '.3f'):>8s} "
                 f"{fmt(med(per(H, n, 'p999_ms')), '.3f'):>9s} {fmt(max([x for x in per(H, n, 'max_ms') if x is not None], default=None), '.1f'):>8s} "
                 f"{fmt(med(per(H, n, 'cpu_us_per_req')), '.1f'):>10s} {fmt(a50, '+.3f'):>8s} {fmt(a99, '+.3f'):>8s} "
                 f"{sum(r['non200'] for r in H if r['target'] == n):>8d}")
    L.append("  (max is the max over rounds; +p50/+p99 = added over direct-https in the same round, client doing TLS itself)")
    L.append("")
    L.append("Memory (MiB, summed over the process tree) and startup")
    L.append(f"  {'target':16s} {'procs':>5s} {'RSS idle':>9s} {'RSS load':>9s} {'RSS end':>8s} {'VmHWM':>7s} "
             f"{'first 200 ms':>13s} {'port open ms':>13s} {'stop s':>7s}")
    S = R["startup"]
    for n in names + ["sidecar-cacert"]:
        idle = R["idle"].get(n, {})
        st = S.get(n)
        L.append(f"  {n:16s} {idle.get('processes', '-'):>5} {fmt(idle.get('rss_mib'), '.1f'):>9s} "
                 f"{fmt(med(per(W, n, 'rss_after_mib')), '.1f'):>9s} {fmt(R['final'].get(n, {}).get('rss_mib'), '.1f'):>8s} "
                 f"{fmt(R['final'].get(n, {}).get('hwm_mib'), '.1f'):>7s} "
                 f"{fmt(med([r['first_200_ms'] for r in st]) if st else None, '.1f'):>13s} "
                 f"{fmt(med([r['port_open_ms'] for r in st]) if st else None, '.1f'):>13s} "
                 f"{fmt(med([r['stop_s'] for r in st]) if st else None, '.2f'):>7s}")
    L.append("  (RSS load = right after each wrk run, median; VmHWM = peak, summed over processes, at the end;")
    L.append("   startup = exec -> first 200 proxied through a fresh process, median of "
             f"{R['args']['startup_runs']}; sidecar-cacert = SSL_CERT_FILE/SSL_CERT_DIR limited to the CA)")
    L.append(f"  AOT binary: {R['binary_bytes'] / 1e6:.1f} MB ({R['binary_bytes'] / 2**20:.1f} MiB), "
             f"{os.path.basename(R['info']['sidecar_bin'])}")
    L.append("")

    # ratios: per round, then median (and the spread)
    L.append("Ratios to nginx (per-round ratio, median [min..max]; < 1 is better for all but throughput)")
    goals = {
        "throughput (wrk rps)": ">= 0.75 (G1)",
        "CPU/request, closed loop": "<= 1.5 (G2)",
        "CPU/request, 2000 rps": "",
        "p50 at 2000 rps": "",
        "p99 at 2000 rps": "<= 1.25 (G3)",
        "added p50 over direct": "",
        "added p99 over direct": "",
        "RSS idle": "<= 1.2 (G5)",
        "RSS after load": "",
        "startup first 200": "",
    }
    sc = [n for n in names if n != "nginx"]
    L.append(f"  {'metric':26s} " + " ".join(f"{n:>22s}" for n in sc) + f"  {'goal (perf.md)':>14s}")

    def pairs_round(rows, n, key):
        by = {r["round"]: r.get(key) for r in rows if r["target"] == "nginx"}
        return [(r.get(key), by.get(r["round"])) for r in rows if r["target"] == n]

    def pairs_added(n, key, base):
        # a ratio of added latencies only means something when nginx's added latency is clearly positive
        ng = {r["round"]: r[key] - base[r["round"]] for r in H if r["target"] == "nginx" and r["round"] in base}
        return [(r[key] - base[r["round"]], ng.get(r["round"])) for r in H if r["target"] == n and r["round"] in base
                and (ng.get(r["round"]) or 0) > 0.02]

    def cell(rs):
        if rs is None:
            return "-"
        m, lo, hi = rs
        return f"{m:.2f} [{lo:.2f}..{hi:.2f}]" if lo != hi else f"{m:.2f}"

    ratio_rows = {}
    for n in sc:
        ratio_rows.setdefault("throughput (wrk rps)", []).append(ratio_stats(pairs_round(W, n, "rps")))
        ratio_rows.setdefault("CPU/request, closed loop", []).append(ratio_stats(pairs_round(W, n, "cpu_us_per_req")))
        ratio_rows.setdefault("CPU/request, 2000 rps", []).append(ratio_stats(pairs_round(H, n, "cpu_us_per_req")))
        ratio_rows.setdefault("p50 at 2000 rps", []).append(ratio_stats(pairs_round(H, n, "p50_ms")))
        ratio_rows.setdefault("p99 at 2000 rps", []).append(ratio_stats(pairs_round(H, n, "p99_ms")))
        ratio_rows.setdefault("added p50 over direct", []).append(ratio_stats(pairs_added(n, "p50_ms", base50)) if base50 else None)
        ratio_rows.setdefault("added p99 over direct", []).append(ratio_stats(pairs_added(n, "p99_ms", base99)) if base99 else None)
        ng_idle = R["idle"]["nginx"]["rss_mib"]
        ratio_rows.setdefault("RSS idle", []).append(
            (R["idle"][n]["rss_mib"] / ng_idle,) * 3 if n in R["idle"] else None)
        ratio_rows.setdefault("RSS after load", []).append(ratio_stats(pairs_round(W, n, "rss_after_mib")))
        st_n = S.get(n)
        st_ng = med([r["first_200_ms"] for r in S["nginx"]])
        ratio_rows.setdefault("startup first 200", []).append(
            (med([r["first_200_ms"] for r in st_n]) / st_ng,) * 3 if st_n and st_ng else None)
    for metric, cells in ratio_rows.items():
        L.append(f"  {metric:26s} " + " ".join(f"{cell(c):>22s}" for c in cells) + f"  {goals.get(metric, ''):>14s}")
    if S.get("sidecar-cacert") and S.get("nginx"):
        a = med([r["first_200_ms"] for r in S["sidecar-cacert"]])
        b = med([r["first_200_ms"] for r in S["nginx"]])
        if a and b:
            L.append(f"  {'startup, CA-only store':26s} {a / b:>22.2f}")
    L.append("")
    L.append("Absolute goals (perf.md section 6): RSS idle <= 30 MiB, RSS at c32 <= 40 MiB, first 200 <= 50 ms, binary <= 16 MB")
    for k, v in R["sidecar_metrics"].items():
        L.append(f"  {k} /metrics: " + "; ".join(v))
    L.append("  proxy log bytes: " + ", ".join(f"{k} {v}" for k, v in R["log_bytes"].items()))
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    main()
