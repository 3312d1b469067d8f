#!/usr/bin/python3
"""Haven OpenStack lab: a real two-region OpenStack (Debian bookworm, Zed) on 127.0.0.1.

Run with Debian's /usr/bin/python3 (stdlib only), as root, through up.sh / down.sh.

  up      install if needed, configure, start what is not running, wait until every
          endpoint answers (polling, never sleeping as readiness), write clouds.yaml.
          A second run is quick: it only starts what is down.
  up --identity
          only what the Haven API's tests need (MariaDB, memcached, Keystone with the
          test projects, users and roles, the disaster-recovery service type, Barbican
          for the projects' data keys); writes identity.json and identity.env. A full
          `up` does these steps first and writes the same files as soon as they are
          done, before the rest of the cloud.
  down    stop only the processes this lab started (by PID file), unmount its loop mounts.
  status  print each process and whether it runs.

Shared: MariaDB, RabbitMQ (one vhost per region), memcached, Keystone, Barbican (one
key-manager endpoint for both regions).
Per region (RegionOne = protected site, RegionTwo = recovery site): Placement, Glance,
Cinder (NFS driver on a loop-mounted ext4, cinder-backup posix into one backup store
shared by both regions), Neutron (ML2 + a bind-everything mechanism driver, no agents)
and Nova (fake compute driver).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
# HAVEN_OS_STATE, else $HAVEN_LAB_STATE/openstack (scripts/dev.sh, CI), else lab/.state/openstack
STATE = Path(
    os.environ.get("HAVEN_OS_STATE")
    or (Path(os.environ["HAVEN_LAB_STATE"]) / "openstack" if os.environ.get("HAVEN_LAB_STATE") else None)
    or HERE.parent / ".state" / "openstack"
).resolve()
ROOT = STATE / "root"  # unpacked service packages
ETC = STATE / "etc"
RUN = STATE / "run"
LOG = STATE / "log"
DATA = STATE / "data"
BIN = STATE / "bin"
PYDIR = STATE / "py"

PW = "haven-lab"  # lab-only secret, loopback only
HOST = "127.0.0.1"
MYSQL_PORT = 13306
MYSQL_SOCK = RUN / "mysqld.sock"
AMQP_PORT = 5673
EPMD_PORT = 4370
DIST_PORT = 25673
MEMCACHED_PORT = 11212
KEYSTONE_PORT = 5000
KEYSTONE = f"http://{HOST}:{KEYSTONE_PORT}"
BARBICAN_PORT = 9311
BARBICAN = f"http://{HOST}:{BARBICAN_PORT}"

REGIONS = {
    "r1": {"name": "RegionOne", "placement": 8778, "glance": 9292, "cinder": 8776,
           "neutron": 9696, "nova": 8774, "vhost": "r1"},
    "r2": {"name": "RegionTwo", "placement": 8878, "glance": 9392, "cinder": 8876,
           "neutron": 9796, "nova": 8874, "vhost": "r2"},
}
SERVICE_USERS = ["nova", "cinder", "glance", "neutron", "placement", "swift", "barbican"]
SWIFT_PORTS = {"proxy": 18180, "account": 16112, "container": 16111, "object": 16110}
BACKUP_STORE = DATA / "backup-store"  # the recovery site's Cinder backup store
PUBLIC_CIDR = {"r1": "203.0.113.0/25", "r2": "203.0.113.128/25"}
# The Haven API's test tenancy (identity mode): two projects and one user per role in the
# first, a member in the second; Haven's own service user; where the API listens.
DR_PROJECTS = ["dr-alpha", "dr-beta"]
DR_USERS = {  # user: (project, role); Keystone's implied roles: admin > manager > member > reader
    "alpha-reader": ("dr-alpha", "reader"),
    "alpha-member": ("dr-alpha", "member"),
    "alpha-manager": ("dr-alpha", "manager"),
    "beta-member": ("dr-beta", "member"),
    "beta-reader": ("dr-beta", "reader"),
}
DR_API_PORT = 18799
DR_API = f"http://{HOST}:{DR_API_PORT}"
IDENTITY_JSON = STATE / "identity.json"
IDENTITY_ENV = STATE / "identity.env"

PY = "/usr/bin/python3"
PY_CHANGED: set[str] = set()  # lab modules whose code changed during this run


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sbin(name: str) -> str:
    """A console script from the unpacked service packages."""
    for p in (ROOT / "usr" / "bin" / name, Path("/usr/bin") / name):
        if p.exists():
            return str(p)
    raise SystemExit(f"missing {name}: install incomplete")


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PATH"] = f"{BIN}:{ROOT}/usr/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    e["PYTHONPATH"] = str(PYDIR)
    e["HOME"] = str(DATA / "home")
    e["LC_ALL"] = "C.UTF-8"
    e.pop("VIRTUAL_ENV", None)
    for k in list(e):
        if k.startswith("OS_"):
            e.pop(k)
    return e


def run(cmd: list[str], check: bool = True, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, env=kw.pop("env", env()), capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise SystemExit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
    return r


# --------------------------------------------------------------------------- processes

def _starttime(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return None if fields[0] == "Z" else fields[19]  # field 22 of stat: start time


def pid_of(name: str) -> int | None:
    """The daemon's pid if the process recorded in its PID file still runs.

    The file holds "pid starttime": a recycled pid has another start time. (The process's
    environment cannot be used: setproctitle, as in neutron-server, overwrites it.)
    """
    try:
        pid_s, start = (RUN / f"{name}.pid").read_text().split()
        pid = int(pid_s)
    except (OSError, ValueError):
        return None
    return pid if _starttime(pid) == start else None


def ours() -> list[int]:
    """Processes started by this lab (marked in their environment), daemonised children
    included (epmd, privsep helpers)."""
    mark = f"HAVEN_LAB_OS_STATE={STATE}".encode()
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            try:
                if mark in (d / "environ").read_bytes().split(b"\0"):
                    found.append(int(d.name))
            except OSError:
                pass
    return found


def spawn(name: str, cmd: list[str], extra_env: dict[str, str] | None = None,
          restart: bool = False) -> bool:
    """Start a daemon unless it runs (restart: stop it first). True if started now."""
    if restart and pid_of(name):
        log(f"configuration of {name} changed: restarting")
        stop(name)
    if pid_of(name):
        return False
    e = env()
    e.update(extra_env or {})
    e["HAVEN_LAB_PROC"] = name
    e["HAVEN_LAB_OS_STATE"] = str(STATE)
    out = open(LOG / f"{name}.out", "ab")
    p = subprocess.Popen(cmd, env=e, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         start_new_session=True, cwd=str(STATE))
    start = None
    while start is None and p.poll() is None:
        start = _starttime(p.pid)
    (RUN / f"{name}.pid").write_text(f"{p.pid} {start}")
    log(f"started {name} (pid {p.pid})")
    return True


def stop(name: str) -> None:
    pid = pid_of(name)
    f = RUN / f"{name}.pid"
    if pid:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                break
            deadline = time.time() + 20
            while time.time() < deadline and pid_of(name):
                time.sleep(0.2)
            if not pid_of(name):
                break
        log(f"stopped {name} (pid {pid})")
    f.unlink(missing_ok=True)


def wait_for(what: str, probe, timeout: float = 300, name: str | None = None) -> None:
    """Poll until probe() is truthy; fail early if the named daemon died."""
    start = time.time()
    delay = 0.2
    while True:
        try:
            if probe():
                log(f"ready: {what} ({time.time() - start:.1f}s)")
                return
        except Exception:
            pass
        if name and not pid_of(name):
            tail = (LOG / f"{name}.out").read_text(errors="replace")[-3000:] if (LOG / f"{name}.out").exists() else ""
            raise SystemExit(f"{name} died while waiting for {what}\n{tail}")
        if time.time() - start > timeout:
            raise SystemExit(f"timeout waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 1.5, 2.0)


def tcp_open(port: int) -> bool:
    with socket.create_connection((HOST, port), timeout=2):
        return True


def http_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers={"Connection": "close"}), timeout=10):
            return True
    except urllib.error.HTTPError as e:
        return e.code < 500


# --------------------------------------------------------------------------- config files

def ini(path: Path, sections: dict[str, dict[str, object]]) -> bool:
    """Write an ini file; True if its content changed (its daemons must restart)."""
    lines = []
    for sec, kv in sections.items():
        lines.append(f"[{sec}]")
        lines += [f"{k} = {v}" for k, v in kv.items()]
        lines.append("")
    text = "\n".join(lines)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        existed = path.exists()
        path.write_text(text)
        return existed
    return False


def db(name: str) -> str:
    return f"mysql+pymysql://haven:{PW}@{HOST}:{MYSQL_PORT}/{name}?charset=utf8"


def amqp(r: str) -> str:
    return f"rabbit://haven:{PW}@{HOST}:{AMQP_PORT}/{REGIONS[r]['vhost']}"


def auth(user: str, region: str) -> dict[str, object]:
    return {"auth_type": "password", "auth_url": KEYSTONE, "project_domain_name": "Default",
            "user_domain_name": "Default", "project_name": "service", "username": user,
            "password": PW, "region_name": region}


def authtoken(user: str, region: str) -> dict[str, object]:
    d = auth(user, region)
    d.update({"www_authenticate_uri": KEYSTONE, "memcached_servers": f"{HOST}:{MEMCACHED_PORT}",
              "service_token_roles_required": "true"})
    return d


def lock(svc: str) -> dict[str, object]:
    p = DATA / "lock" / svc
    p.mkdir(parents=True, exist_ok=True)
    return {"lock_path": p}


def copy_template(src_rel: str, dst: Path) -> None:
    src = ROOT / src_rel
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not dst.exists():
        shutil.copy(src, dst)


# --------------------------------------------------------------------------- infra

def prepare() -> None:
    for d in (ETC, RUN, LOG, DATA, BIN, PYDIR, DATA / "home", BACKUP_STORE):
        d.mkdir(parents=True, exist_ok=True)
    # Everything runs as root: sudo just runs its command, minus any "*-rootwrap <conf>".
    (BIN / "sudo").write_text(
        '#!/bin/sh\nwhile [ "${1#-}" != "$1" ]; do shift; done\n'
        'case "$1" in *-rootwrap) shift 2;; esac\nexec "$@"\n')
    # Cinder's NFS driver only checks that mount.nfs exists; the share is already mounted.
    (BIN / "mount.nfs").write_text("#!/bin/sh\nexit 1\n")
    for f in ("sudo", "mount.nfs"):
        (BIN / f).chmod(0o755)
    # The ML2 mechanism driver, registered through an entry point (a dist-info on PYTHONPATH).
    for mod in ("haven_lab_mech.py", "haven_lab_compute.py", "sitecustomize.py"):
        new = (HERE / "py" / mod).read_text()
        dst = PYDIR / mod
        if dst.exists() and dst.read_text() != new:
            PY_CHANGED.add(mod)
        dst.write_text(new)
    di = PYDIR / "haven_lab_mech-1.0.dist-info"
    di.mkdir(exist_ok=True)
    (di / "METADATA").write_text("Metadata-Version: 2.1\nName: haven-lab-mech\nVersion: 1.0\n")
    (di / "entry_points.txt").write_text(
        "[neutron.ml2.mechanism_drivers]\nhaven_lab = haven_lab_mech:HavenLabMechanismDriver\n")


def mysql() -> None:
    datadir = DATA / "mysql"
    if not (datadir / "mysql").exists():
        datadir.mkdir(parents=True, exist_ok=True)
        run(["mariadb-install-db", f"--datadir={datadir}", "--user=root",
             "--auth-root-authentication-method=socket", "--skip-test-db"])
    cnf = ETC / "my.cnf"
    cnf.write_text(
        "[mysqld]\n"
        f"datadir={datadir}\nsocket={MYSQL_SOCK}\nport={MYSQL_PORT}\nbind-address={HOST}\n"
        f"pid-file={RUN}/mysqld.real.pid\nuser=root\nskip-name-resolve\n"
        "innodb_buffer_pool_size=96M\nperformance_schema=OFF\nmax_connections=1000\n"
        "innodb_flush_log_at_trx_commit=2\nsync_binlog=0\ninnodb_doublewrite=0\n"
        "character-set-server=utf8mb4\ncollation-server=utf8mb4_general_ci\n"
        f"log-error={LOG}/mysqld.err\n")
    spawn("mysqld", ["/usr/sbin/mariadbd", f"--defaults-file={cnf}"])
    wait_for("mariadb", lambda: MYSQL_SOCK.exists() and tcp_open(MYSQL_PORT), name="mysqld")
    dbs = ["keystone", "barbican"] + [f"{s}_{r}" for r in REGIONS for s in
                          ("placement", "glance", "cinder", "neutron", "nova_api", "nova", "nova_cell0")]
    sql = "".join(f"CREATE DATABASE IF NOT EXISTS {d};" for d in dbs)
    sql += (f"CREATE USER IF NOT EXISTS 'haven'@'{HOST}' IDENTIFIED BY '{PW}';"
            f"GRANT ALL PRIVILEGES ON *.* TO 'haven'@'{HOST}';FLUSH PRIVILEGES;")
    run(["mariadb", f"--socket={MYSQL_SOCK}", "-uroot", "-e", sql])


def rabbit_hash(password: str) -> str:
    salt = os.urandom(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def rabbitmq() -> None:
    base = DATA / "rabbitmq"
    base.mkdir(parents=True, exist_ok=True)
    defs = ETC / "rabbitmq-definitions.json"
    if not defs.exists():
        defs.write_text(json.dumps({
            "users": [{"name": "haven", "password_hash": rabbit_hash(PW), "tags": "administrator",
                       "hashing_algorithm": "rabbit_password_hashing_sha256"}],
            "vhosts": [{"name": v["vhost"]} for v in REGIONS.values()],
            "permissions": [{"user": "haven", "vhost": v["vhost"], "configure": ".*", "write": ".*",
                             "read": ".*"} for v in REGIONS.values()],
        }))
    conf = ETC / "rabbitmq.conf"
    conf.write_text(f"listeners.tcp.1 = {HOST}:{AMQP_PORT}\nload_definitions = {defs}\n"
                    "loopback_users = none\nvm_memory_high_watermark.absolute = 512MB\n"
                    "disk_free_limit.absolute = 50MB\n")
    e = {
        "RABBITMQ_NODENAME": "haven-lab@localhost", "RABBITMQ_CONFIG_FILE": str(conf)[:-5],
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"), "RABBITMQ_LOG_BASE": str(LOG / "rabbitmq"),
        "RABBITMQ_PID_FILE": str(RUN / "rabbitmq.real.pid"), "RABBITMQ_ENABLED_PLUGINS_FILE": str(ETC / "rabbitmq-plugins"),
        "RABBITMQ_ENABLED_PLUGINS": "", "RABBITMQ_DIST_PORT": str(DIST_PORT),
        "ERL_EPMD_PORT": str(EPMD_PORT), "ERL_EPMD_ADDRESS": HOST, "HOME": str(base),
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        "RABBITMQ_USE_LONGNAME": "false",
    }
    (ETC / "rabbitmq-plugins").write_text("[].\n")
    spawn("rabbitmq", ["/usr/lib/rabbitmq/bin/rabbitmq-server"], e)
    wait_for("rabbitmq", lambda: tcp_open(AMQP_PORT), timeout=240, name="rabbitmq")


def memcached() -> None:
    spawn("memcached", ["/usr/bin/memcached", "-l", HOST, "-p", str(MEMCACHED_PORT), "-U", "0",
                        "-m", "64", "-u", "root"])
    wait_for("memcached", lambda: tcp_open(MEMCACHED_PORT), name="memcached")


def once(marker: str, cmds: list[list[str]]) -> None:
    """Run setup commands (db syncs) once; a marker file records success."""
    m = DATA / "done" / marker
    if m.exists():
        return
    m.parent.mkdir(parents=True, exist_ok=True)
    t = time.time()
    for c in cmds:
        run(c)
    m.touch()
    log(f"{marker} done ({time.time() - t:.1f}s)")


def uwsgi(name: str, port: int, wsgi_file: str, extra_env: dict[str, str], restart: bool) -> None:
    cmd = ["/usr/bin/uwsgi", "--plugin", "python3", "--http-socket", f"{HOST}:{port}",
           "--wsgi-file", wsgi_file, "--master", "--processes", "1", "--threads", "4",
           "--die-on-term", "--lazy-apps", "--add-header", "Connection: close",
           "--buffer-size", "65535", "--hook-master-start", "unix_signal:15 gracefully_kill_them_all"]
    for k, v in extra_env.items():
        cmd += ["--env", f"{k}={v}"]
    spawn(name, cmd, extra_env, restart)


# --------------------------------------------------------------------------- keystone

def keystone() -> None:
    conf = ETC / "keystone" / "keystone.conf"
    changed = ini(conf, {
        "DEFAULT": {"log_file": LOG / "keystone.log", "max_token_size": 255},
        "database": {"connection": db("keystone")},
        "token": {"provider": "fernet", "expiration": 14400},
        "fernet_tokens": {"key_repository": ETC / "keystone" / "fernet-keys"},
        "fernet_receipts": {"key_repository": ETC / "keystone" / "fernet-keys"},
        "credential": {"key_repository": ETC / "keystone" / "credential-keys"},
        "cache": {"enabled": "true", "backend": "dogpile.cache.pymemcache",
                  "memcache_servers": f"{HOST}:{MEMCACHED_PORT}"},
    })
    km = [sbin("keystone-manage"), "--config-file", str(conf)]
    once("keystone-db", [
        km + ["db_sync"],
        km + ["fernet_setup", "--keystone-user", "root", "--keystone-group", "root"],
        km + ["credential_setup", "--keystone-user", "root", "--keystone-group", "root"],
        km + ["bootstrap", "--bootstrap-password", PW, "--bootstrap-admin-url", f"{KEYSTONE}/v3",
              "--bootstrap-public-url", f"{KEYSTONE}/v3", "--bootstrap-internal-url", f"{KEYSTONE}/v3",
              "--bootstrap-region-id", "RegionOne"],
    ])
    uwsgi("keystone", KEYSTONE_PORT, sbin("keystone-wsgi-public"),
          {"OS_KEYSTONE_CONFIG_FILES": str(conf)}, changed)
    wait_for("keystone", lambda: http_answers(f"{KEYSTONE}/v3"), name="keystone")


class KS:
    """Just enough of the Keystone v3 API (stdlib only) to create the lab's catalog."""

    def __init__(self) -> None:
        body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"id": "default"}, "password": PW}}},
            "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}
        req = urllib.request.Request(f"{KEYSTONE}/v3/auth/tokens", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json", "Connection": "close"})
        with urllib.request.urlopen(req, timeout=30) as r:
            self.token = r.headers["X-Subject-Token"]
            self.catalog = json.load(r)["token"].get("catalog", [])

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        req = urllib.request.Request(f"{KEYSTONE}/v3{path}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"X-Auth-Token": self.token, "Connection": "close",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            data = r.read()
            return json.loads(data) if data else {}

    def find(self, coll: str, **flt) -> dict | None:
        for item in self.call("GET", f"/{coll}")[coll]:
            if all(item.get(k) == v for k, v in flt.items()):
                return item
        return None

    def ensure(self, coll: str, key: str, body: dict, **flt) -> dict:
        found = self.find(coll, **flt)
        if found:
            return found
        return self.call("POST", f"/{coll}", {key: body})[key]


def keystone_catalog() -> None:
    ks = KS()
    ks.ensure("regions", "region", {"id": "RegionTwo"}, id="RegionTwo")
    service_project = ks.ensure("projects", "project", {"name": "service", "domain_id": "default"},
                                name="service")
    admin_role = ks.find("roles", name="admin")
    roles = {r: ks.ensure("roles", "role", {"name": r}, name=r) for r in ("member", "reader", "service")}
    for u in SERVICE_USERS:
        user = ks.ensure("users", "user", {"name": u, "password": PW, "domain_id": "default"}, name=u)
        # admin to act for users, service so that other services accept its service tokens
        for role in (admin_role, roles["service"]):
            ks.call("PUT", f"/projects/{service_project['id']}/users/{user['id']}/roles/{role['id']}")
    services = {
        "identity": ("keystone", lambda r: f"{KEYSTONE}/v3"),
        "placement": ("placement", lambda r: f"http://{HOST}:{REGIONS[r]['placement']}"),
        "image": ("glance", lambda r: f"http://{HOST}:{REGIONS[r]['glance']}"),
        "volumev3": ("cinderv3", lambda r: f"http://{HOST}:{REGIONS[r]['cinder']}/v3/%(project_id)s"),
        "block-storage": ("cinder", lambda r: f"http://{HOST}:{REGIONS[r]['cinder']}/v3/%(project_id)s"),
        "network": ("neutron", lambda r: f"http://{HOST}:{REGIONS[r]['neutron']}"),
        "compute": ("nova", lambda r: f"http://{HOST}:{REGIONS[r]['nova']}/v2.1"),
        "key-manager": ("barbican", lambda r: BARBICAN),  # one Barbican serves both regions
    }
    endpoints = ks.call("GET", "/endpoints")["endpoints"]
    swift = ks.ensure("services", "service", {"name": "swift", "type": "object-store"},
                      type="object-store")
    for iface in ("public", "internal", "admin"):
        if not [e for e in endpoints if e["service_id"] == swift["id"] and e["interface"] == iface]:
            ks.call("POST", "/endpoints", {"endpoint": {
                "service_id": swift["id"], "region_id": "RegionTwo", "interface": iface,
                "url": f"http://{HOST}:{SWIFT_PORTS['proxy']}/v1/AUTH_%(project_id)s"}})
    for stype, (sname, url) in services.items():
        svc = ks.ensure("services", "service", {"name": sname, "type": stype}, type=stype)
        for r, reg in REGIONS.items():
            for iface in ("public", "internal", "admin"):
                have = [e for e in endpoints if e["service_id"] == svc["id"] and
                        e["region_id"] == reg["name"] and e["interface"] == iface]
                if not have:
                    ks.call("POST", "/endpoints", {"endpoint": {
                        "service_id": svc["id"], "region_id": reg["name"], "interface": iface,
                        "url": url(r)}})
    log("keystone catalog ready")


def keystone_tenancy() -> None:
    """The Haven API's test projects, users, roles and service entry (idempotent)."""
    ks = KS()
    roles = {r["name"]: r for r in ks.call("GET", "/roles")["roles"]}
    if "manager" not in roles:
        roles["manager"] = ks.call("POST", "/roles", {"role": {"name": "manager"}})["role"]
        # the role chain of OpenStack's secure RBAC: admin implies manager implies member
        ks.call("PUT", f"/roles/{roles['admin']['id']}/implies/{roles['manager']['id']}")
        ks.call("PUT", f"/roles/{roles['manager']['id']}/implies/{roles['member']['id']}")
    projects = {n: ks.ensure("projects", "project", {"name": n, "domain_id": "default"}, name=n)
                for n in DR_PROJECTS}
    users: dict[str, dict[str, str]] = {}
    for name, (project, role) in DR_USERS.items():
        user = ks.ensure("users", "user", {"name": name, "password": PW, "domain_id": "default"},
                         name=name)
        ks.call("PUT", f"/projects/{projects[project]['id']}/users/{user['id']}/roles/"
                       f"{roles[role]['id']}")
        users[name] = {"id": user["id"], "project": project,
                       "project_id": projects[project]["id"], "role": role}
    # Haven's service user validates callers' tokens (service role) in the service project
    service_project = ks.find("projects", name="service")
    haven = ks.ensure("users", "user", {"name": "haven", "password": PW, "domain_id": "default"},
                      name="haven")
    for role in ("service", "admin"):
        ks.call("PUT", f"/projects/{service_project['id']}/users/{haven['id']}/roles/"
                       f"{roles[role]['id']}")
    svc = ks.ensure("services", "service", {"name": "haven", "type": "disaster-recovery"},
                    type="disaster-recovery")
    have = [e for e in ks.call("GET", "/endpoints")["endpoints"] if e["service_id"] == svc["id"]]
    for r in REGIONS.values():
        for iface in ("public", "internal", "admin"):
            if not [e for e in have if e["region_id"] == r["name"] and e["interface"] == iface]:
                ks.call("POST", "/endpoints", {"endpoint": {
                    "service_id": svc["id"], "region_id": r["name"], "interface": iface,
                    "url": DR_API}})
    admin_project = ks.find("projects", name="admin")
    info = {
        "auth_url": f"{KEYSTONE}/v3", "password": PW, "user_domain": "Default",
        "project_domain": "Default", "api_url": DR_API, "api_port": DR_API_PORT,
        "service_user": {"name": "haven", "project": "service"},
        "barbican": {"url": BARBICAN, "service_type": "key-manager"},
        "admin": {"name": "admin", "project": "admin", "project_id": admin_project["id"]},
        "projects": {n: p["id"] for n, p in projects.items()},
        "users": users,
    }
    IDENTITY_JSON.write_text(json.dumps(info, indent=2) + "\n")


def identity_ready() -> None:
    """Sourced by scripts/dev.sh (and by hand): tells the API's and the key tests where
    Keystone is; written once Keystone and Barbican both answer (CI's phase 1 waits for
    this file)."""
    IDENTITY_ENV.write_text(f"export HAVEN_OS_IDENTITY={IDENTITY_JSON}\n")
    log(f"identity ready: {IDENTITY_JSON}")


def barbican() -> None:
    """Barbican (key-manager) on 127.0.0.1:9311 with the simple_crypto plugin: the store
    of the tenants' recovery-data keys (Haven reads them through an ACL for its service
    user). No worker, no keystone listener, no queue: the API alone serves secrets."""
    d = ETC / "barbican"
    kek_file = DATA / "barbican-kek"
    if not kek_file.exists():  # the plugin's key-encryption key, made once (lab only)
        kek_file.parent.mkdir(parents=True, exist_ok=True)
        kek_file.write_text(base64.b64encode(os.urandom(32)).decode())
        kek_file.chmod(0o600)
    changed = ini(d / "barbican.conf", {
        "DEFAULT": {"sql_connection": db("barbican"), "db_auto_create": "false",
                    "host_href": BARBICAN, "log_file": LOG / "barbican-api.log"},
        "keystone_authtoken": authtoken("barbican", "RegionOne"),
        "secretstore": {"namespace": "barbican.secretstore.plugin",
                        "enabled_secretstore_plugins": "store_crypto"},
        "crypto": {"namespace": "barbican.crypto.plugin",
                   "enabled_crypto_plugins": "simple_crypto"},
        "simple_crypto_plugin": {"kek": kek_file.read_text().strip()},
        "queue": {"enable": "false"},
        # today's role model (reader/member/admin): a member creates secrets and ACLs in
        # their project; ACL users read what they were granted
        "oslo_policy": {"enforce_new_defaults": "true", "enforce_scope": "false"},
    })
    # barbican's code finds its config in the default places only (~/.barbican/, /etc/):
    # HOME is the lab's own (env()), so its ~/.barbican/barbican.conf is this one
    home = DATA / "home" / ".barbican"
    home.mkdir(parents=True, exist_ok=True)
    link = home / "barbican.conf"
    if not link.is_symlink():
        link.unlink(missing_ok=True)
        link.symlink_to(d / "barbican.conf")
    copy_template("usr/share/barbican-common/barbican-api-paste.ini", d / "barbican-api-paste.ini")
    # the packaged wsgi script loads /etc/barbican/barbican-api-paste.ini; this one ours
    wsgi = d / "barbican-wsgi.py"
    wsgi.write_text("from paste import deploy\n"
                    f"application = deploy.loadapp('config:{d / 'barbican-api-paste.ini'}')\n")
    once("barbican-db", [[sbin("barbican-manage"), "db", "upgrade", "--db-url", db("barbican")]])
    t = time.time()
    uwsgi("barbican", BARBICAN_PORT, str(wsgi), {}, changed)
    wait_for("barbican", lambda: http_answers(f"{BARBICAN}/v1/secrets"), name="barbican")
    log(f"barbican answers after {time.time() - t:.1f}s")


# --------------------------------------------------------------------------- per region

def placement(r: str) -> None:
    reg = REGIONS[r]
    d = ETC / r / "placement"
    changed = ini(d / "placement.conf", {
        "DEFAULT": {"log_file": LOG / f"{r}-placement.log"},
        "api": {"auth_strategy": "keystone"},
        "keystone_authtoken": authtoken("placement", reg["name"]),
        "placement_database": {"connection": db(f"placement_{r}")},
    })
    once(f"{r}-placement-db", [[sbin("placement-manage"), "--config-file", str(d / "placement.conf"), "db", "sync"]])
    uwsgi(f"{r}-placement", reg["placement"], sbin("placement-api"), {"OS_PLACEMENT_CONFIG_DIR": str(d)},
          changed)


def glance(r: str) -> None:
    reg = REGIONS[r]
    d = ETC / r / "glance"
    store = DATA / r / "glance"
    for sub in ("images", "staging", "tasks"):
        (store / sub).mkdir(parents=True, exist_ok=True)
    copy_template("usr/share/glance-common/glance-api-paste.ini", d / "glance-api-paste.ini")
    changed = ini(d / "glance-api.conf", {
        "DEFAULT": {"bind_host": HOST, "bind_port": reg["glance"], "workers": 1,
                    "enabled_backends": "fs:file", "log_file": LOG / f"{r}-glance-api.log",
                    "image_cache_dir": store / "cache", "show_image_direct_url": "false",
                    "transport_url": amqp(r)},
        "database": {"connection": db(f"glance_{r}")},
        "glance_store": {"default_backend": "fs"},
        "fs": {"filesystem_store_datadir": store / "images"},
        "os_glance_staging_store": {"filesystem_store_datadir": store / "staging"},
        "os_glance_tasks_store": {"filesystem_store_datadir": store / "tasks"},
        "keystone_authtoken": authtoken("glance", reg["name"]),
        "paste_deploy": {"flavor": "keystone", "config_file": d / "glance-api-paste.ini"},
        "oslo_concurrency": lock(f"{r}-glance"),
        "oslo_messaging_notifications": {"driver": "noop"},
    })
    once(f"{r}-glance-db", [[sbin("glance-manage"), "--config-file", str(d / "glance-api.conf"), "db_sync"]])
    spawn(f"{r}-glance-api", [sbin("glance-api"), "--config-file", str(d / "glance-api.conf")],
          restart=changed)


def nfs_share(r: str) -> tuple[str, Path]:
    share = f"{HOST}:/haven-lab/{r}"
    base = DATA / r / "cinder" / "mnt"
    return share, base / hashlib.md5(share.encode()).hexdigest()


def is_mounted(path: Path) -> bool:
    with open("/proc/mounts") as f:
        return any(line.split()[1] == str(path) for line in f)


def cinder_share(r: str) -> None:
    """The NFS driver's share: an ext4 file system in a sparse file, loop-mounted where
    os-brick would mount the NFS share (so it sees it as mounted and skips mounting)."""
    share, mnt = nfs_share(r)
    img = DATA / r / "cinder" / "share.ext4"
    mnt.mkdir(parents=True, exist_ok=True)
    if not img.exists():
        with open(img, "wb") as f:
            f.truncate(40 * 1024**3)
        run(["mkfs.ext4", "-q", "-F", "-m", "0", str(img)])
    if not is_mounted(mnt):
        # A loop device still attached to the image (its mount kept alive by another mount
        # namespace, e.g. libvirtd's, after our umount) must be reused: a second loop
        # device over the same file would be a second writer and corrupt the file system.
        held = run(["losetup", "-j", str(img)], check=False).stdout.split(":", 1)[0].strip()
        if held:
            run(["mount", held, str(mnt)])
        else:
            run(["mount", "-o", "loop", str(img), str(mnt)])
        (RUN / f"{r}-share.mount").write_text(str(mnt))
        log(f"mounted {r} share at {mnt}")
    (ETC / r / "cinder").mkdir(parents=True, exist_ok=True)
    (ETC / r / "cinder" / "nfs_shares").write_text(share + "\n")


def cinder(r: str) -> None:
    reg = REGIONS[r]
    d = ETC / r / "cinder"
    cinder_share(r)
    copy_template("usr/share/cinder-common/api-paste.ini", d / "api-paste.ini")
    state = DATA / r / "cinder"
    changed = ini(d / "cinder.conf", {
        "DEFAULT": {
            "host": f"{r}-cinder", "my_ip": HOST, "osapi_volume_listen": HOST,
            "osapi_volume_listen_port": reg["cinder"], "osapi_volume_workers": 1,
            "transport_url": amqp(r), "auth_strategy": "keystone", "enabled_backends": "nfs",
            "glance_api_servers": f"http://{HOST}:{reg['glance']}", "state_path": state,
            "api_paste_config": d / "api-paste.ini", "rootwrap_config": d / "rootwrap.conf",
            "backup_driver": "cinder.backup.drivers.posix.PosixBackupDriver",
            # zstd: zlib (the default) spent 11-14 s compressing and 12-24 s decompressing
            # each mostly-zero GiB here, zstd 1.4 s / 2.9 s. One worker: with two, a worker's
            # os-brick privsep call deadlocked (greenlet "cannot switch to a different
            # thread") and its restores hung in "restoring" for good.
            "backup_posix_path": BACKUP_STORE, "backup_workers": 1, "debug": "false",
            "backup_compression_algorithm": "zstd",
            "volume_name_template": "volume-%s", "image_conversion_dir": state / "conversion",
            "storage_availability_zone": "nova", "default_availability_zone": "nova",
            "allow_availability_zone_fallback": "true",
            # tests run side by side in one project: no per-project caps (default 10 volumes)
            "quota_volumes": -1, "quota_snapshots": -1, "quota_gigabytes": -1,
            "quota_backups": -1, "quota_backup_gigabytes": -1, "quota_groups": -1,
        },
        "nfs": {
            "volume_driver": "cinder.volume.drivers.nfs.NfsDriver", "volume_backend_name": "nfs",
            "nfs_shares_config": d / "nfs_shares", "nfs_mount_point_base": state / "mnt",
            "nfs_snapshot_support": "true", "nfs_sparsed_volumes": "true",
            "nas_secure_file_operations": "false", "nas_secure_file_permissions": "false",
            "nfs_qcow2_volumes": "false",
        },
        "database": {"connection": db(f"cinder_{r}")},
        "keystone_authtoken": authtoken("cinder", reg["name"]),
        "nova": {**auth("nova", reg["name"]), "interface": "public"},
        "oslo_concurrency": lock(f"{r}-cinder"),
        "oslo_messaging_notifications": {"driver": "noop"},
        "coordination": {"backend_url": f"file://{DATA / r / 'cinder' / 'coordination'}"},
    })
    cfg = ["--config-file", str(d / "cinder.conf")]
    once(f"{r}-cinder-db", [[sbin("cinder-manage")] + cfg + ["db", "sync"]])
    for svc in ("api", "scheduler", "volume", "backup"):
        spawn(f"{r}-cinder-{svc}", [sbin(f"cinder-{svc}")] + cfg +
              ["--log-file", str(LOG / f"{r}-cinder-{svc}.log")], restart=changed)


def neutron(r: str) -> None:
    reg = REGIONS[r]
    d = ETC / r / "neutron"
    copy_template("usr/share/neutron-common/api-paste.ini", d / "api-paste.ini")
    changed = ini(d / "neutron.conf", {
        "DEFAULT": {
            "bind_host": HOST, "bind_port": reg["neutron"], "core_plugin": "ml2",
            "service_plugins": "router", "auth_strategy": "keystone", "transport_url": amqp(r),
            "api_workers": 1, "rpc_workers": 0, "rpc_state_report_workers": 0,
            "notify_nova_on_port_status_changes": "false",
            "notify_nova_on_port_data_changes": "false", "api_paste_config": d / "api-paste.ini",
            "state_path": DATA / r / "neutron", "allow_overlapping_ips": "true",
            "log_file": LOG / f"{r}-neutron-server.log", "host": f"{r}-network",
        },
        "database": {"connection": db(f"neutron_{r}")},
        "keystone_authtoken": authtoken("neutron", reg["name"]),
        "nova": auth("nova", reg["name"]),
        "oslo_concurrency": lock(f"{r}-neutron"),
        "oslo_messaging_notifications": {"driver": "noop"},
        "agent": {"root_helper": "sudo"},
        "quotas": {"quota_network": -1, "quota_subnet": -1, "quota_port": -1, "quota_router": -1,
                   "quota_floatingip": -1, "quota_security_group": -1,
                   "quota_security_group_rule": -1},
    })
    changed |= ini(d / "ml2_conf.ini", {
        "ml2": {"type_drivers": "flat,vxlan", "tenant_network_types": "vxlan",
                "mechanism_drivers": "haven_lab", "extension_drivers": "port_security"},
        "ml2_type_flat": {"flat_networks": "physnet1"},
        "ml2_type_vxlan": {"vni_ranges": "1:1000"},
    })
    cfg = ["--config-file", str(d / "neutron.conf"), "--config-file", str(d / "ml2_conf.ini")]
    once(f"{r}-neutron-db", [[sbin("neutron-db-manage")] + cfg + ["upgrade", "heads"]])
    spawn(f"{r}-neutron-server", [sbin("neutron-server")] + cfg,
          restart=changed or "haven_lab_mech.py" in PY_CHANGED)


def nova(r: str) -> None:
    reg = REGIONS[r]
    d = ETC / r / "nova"
    copy_template("usr/share/nova-common/api-paste.ini", d / "api-paste.ini")
    state = DATA / r / "nova"
    (state / "instances").mkdir(parents=True, exist_ok=True)
    (LOG / r).mkdir(parents=True, exist_ok=True)
    changed = ini(d / "nova.conf", {
        "DEFAULT": {
            "host": f"{r}-compute", "my_ip": HOST, "compute_driver": "haven_lab_compute.HavenLabDriver",
            "transport_url": amqp(r), "osapi_compute_listen": HOST,
            "osapi_compute_listen_port": reg["nova"], "osapi_compute_workers": 1,
            "enabled_apis": "osapi_compute", "state_path": state,
            "instances_path": state / "instances", "vif_plugging_is_fatal": "false",
            "vif_plugging_timeout": 0, "log_dir": LOG / r, "rootwrap_config": d / "rootwrap.conf",
            "allow_resize_to_same_host": "true",
        },
        "api": {"auth_strategy": "keystone"},
        "wsgi": {"api_paste_config": d / "api-paste.ini"},
        "api_database": {"connection": db(f"nova_api_{r}")},
        "database": {"connection": db(f"nova_{r}")},
        "keystone_authtoken": authtoken("nova", reg["name"]),
        "placement": auth("placement", reg["name"]),
        "neutron": auth("neutron", reg["name"]),
        "cinder": {**auth("cinder", reg["name"]), "os_region_name": reg["name"]},
        "glance": {"api_servers": f"http://{HOST}:{reg['glance']}"},
        "scheduler": {"discover_hosts_in_cells_interval": -1, "workers": 1},
        "conductor": {"workers": 1},
        "quota": {"instances": -1, "cores": -1, "ram": -1, "key_pairs": -1},
        "oslo_concurrency": lock(f"{r}-nova"),
        "oslo_messaging_notifications": {"driver": "noop"},
        "vnc": {"enabled": "false"},
        "service_user": {**auth("nova", reg["name"]), "send_service_user_token": "true"},
    })
    nm = [sbin("nova-manage"), "--config-file", str(d / "nova.conf")]
    once(f"{r}-nova-db", [
        nm + ["api_db", "sync"],
        nm + ["cell_v2", "map_cell0", "--database_connection", db(f"nova_cell0_{r}")],
        nm + ["cell_v2", "create_cell", "--name", "cell1"],
        nm + ["db", "sync"],
    ])
    cfg = ["--config-file", str(d / "nova.conf")]
    for svc in ("api", "conductor", "scheduler", "compute"):
        spawn(f"{r}-nova-{svc}", [sbin(f"nova-{svc}")] + cfg, {"HAVEN_LAB_NFS_DIR": str(nfs_share(r)[1])},
              restart=changed or (svc == "compute" and "haven_lab_compute.py" in PY_CHANGED))


# --------------------------------------------------------------------------- swift (RegionTwo)

SWIFT_LAUNCH = """import sys
from swift.common import utils
utils.set_swift_dir(sys.argv[1])
from swift.common import constraints, storage_policy
storage_policy.reload_storage_policies()
constraints.reload_constraints()
if sys.argv[2] == "ring-builder":
    from swift.cli.ringbuilder import main
    sys.exit(main(sys.argv[2:]))
from swift.common.wsgi import run_wsgi
sys.exit(run_wsgi(sys.argv[3], sys.argv[2], verbose=True))
"""


def swift() -> None:
    """Swift all-in-one for the recovery region: one replica, storage in a plain directory
    (the host's ext4 has user xattrs: no loop mount), Keystone auth in the proxy."""
    d = ETC / "swift"
    node = DATA / "swift" / "node"
    (node / "d1").mkdir(parents=True, exist_ok=True)
    (d / "launch.py").parent.mkdir(parents=True, exist_ok=True)
    (d / "launch.py").write_text(SWIFT_LAUNCH)
    conf = d / "swift.conf"
    if not conf.exists():
        conf.write_text("[swift-hash]\nswift_hash_path_suffix = " + os.urandom(8).hex()
                        + "\nswift_hash_path_prefix = haven\n\n[storage-policy:0]\nname = gold\n"
                        "default = yes\n")
    launch = [PY, str(d / "launch.py"), str(d)]
    for ring in ("account", "container", "object"):
        b = d / f"{ring}.builder"
        if not (d / f"{ring}.ring.gz").exists():
            b.unlink(missing_ok=True)
            run(launch + ["ring-builder", str(b), "create", "10", "1", "1"])
            run(launch + ["ring-builder", str(b), "add", "--region", "1", "--zone", "1", "--ip", HOST,
                          "--port", str(SWIFT_PORTS[ring]), "--device", "d1", "--weight", "100"])
            r = run(launch + ["ring-builder", str(b), "rebalance"], check=False)
            if r.returncode not in (0, 1):
                raise SystemExit(f"swift ring {ring}: {r.stdout}{r.stderr}")
    common = {"bind_ip": HOST, "devices": node, "mount_check": "false", "workers": 0,
              "log_name": "swift", "swift_dir": d}
    changed = False
    for ring in ("account", "container", "object"):
        changed |= ini(d / f"{ring}-server.conf", {
            "DEFAULT": {**common, "bind_port": SWIFT_PORTS[ring]},
            "pipeline:main": {"pipeline": f"healthcheck recon {ring}-server"},
            f"app:{ring}-server": {"use": f"egg:swift#{ring}"},
            "filter:healthcheck": {"use": "egg:swift#healthcheck"},
            "filter:recon": {"use": "egg:swift#recon", "recon_cache_path": DATA / "swift"},
            f"{ring}-replicator": {}, f"{ring}-updater": {}, f"{ring}-auditor": {},
        })
    at = authtoken("swift", "RegionTwo")
    at.pop("service_token_roles_required")
    changed |= ini(d / "proxy-server.conf", {
        "DEFAULT": {**common, "bind_port": SWIFT_PORTS["proxy"]},
        "pipeline:main": {"pipeline": "catch_errors gatekeeper healthcheck proxy-logging cache "
                          "listing_formats authtoken keystoneauth copy slo dlo proxy-logging "
                          "proxy-server"},
        "app:proxy-server": {"use": "egg:swift#proxy", "account_autocreate": "true"},
        "filter:authtoken": {"paste.filter_factory": "keystonemiddleware.auth_token:filter_factory",
                             **at, "delay_auth_decision": "true"},
        "filter:keystoneauth": {"use": "egg:swift#keystoneauth",
                                "operator_roles": "admin, member", "reseller_prefix": "AUTH_"},
        "filter:catch_errors": {"use": "egg:swift#catch_errors"},
        "filter:gatekeeper": {"use": "egg:swift#gatekeeper"},
        "filter:healthcheck": {"use": "egg:swift#healthcheck"},
        "filter:proxy-logging": {"use": "egg:swift#proxy_logging"},
        "filter:cache": {"use": "egg:swift#memcache", "memcache_servers": f"{HOST}:{MEMCACHED_PORT}"},
        "filter:listing_formats": {"use": "egg:swift#listing_formats"},
        "filter:copy": {"use": "egg:swift#copy"},
        "filter:slo": {"use": "egg:swift#slo"},
        "filter:dlo": {"use": "egg:swift#dlo"},
    })
    for svc in ("account", "container", "object", "proxy"):
        spawn(f"r2-swift-{svc}", launch + [f"{svc}-server", str(d / f"{svc}-server.conf")],
              restart=changed)
    wait_for("r2 swift", lambda: http_answers(f"http://{HOST}:{SWIFT_PORTS['proxy']}/healthcheck"),
             name="r2-swift-proxy")


# --------------------------------------------------------------------------- readiness

def api_get(ks: KS, url: str, headers: dict[str, str] | None = None) -> dict:
    h = {"X-Auth-Token": ks.token, "Connection": "close"}
    h.update(headers or {})
    with urllib.request.urlopen(urllib.request.Request(url, headers=h), timeout=20) as r:
        return json.load(r)


def api_post(ks: KS, url: str, body: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={
        "X-Auth-Token": ks.token, "Connection": "close", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)


def services_up(ks: KS, url: str, binaries: set[str], key: str = "services") -> bool:
    found = {s["binary"] for s in api_get(ks, url)[key] if s.get("state") == "up"}
    return binaries <= found


def admin_project_id(ks: KS) -> str:
    return ks.find("projects", name="admin")["id"]


def region_ready(r: str, ks: KS) -> None:
    reg = REGIONS[r]
    pid = admin_project_id(ks)
    wait_for(f"{r} placement", lambda: http_answers(f"http://{HOST}:{reg['placement']}/"), name=f"{r}-placement")
    wait_for(f"{r} glance", lambda: http_answers(f"http://{HOST}:{reg['glance']}/versions"), name=f"{r}-glance-api")
    wait_for(f"{r} neutron", lambda: api_get(ks, f"http://{HOST}:{reg['neutron']}/v2.0/networks") is not None,
             name=f"{r}-neutron-server")
    wait_for(f"{r} cinder volume+backup",
             lambda: services_up(ks, f"http://{HOST}:{reg['cinder']}/v3/{pid}/os-services",
                                 {"cinder-scheduler", "cinder-volume", "cinder-backup"}),
             timeout=400, name=f"{r}-cinder-api")
    nova_url = f"http://{HOST}:{reg['nova']}/v2.1"
    wait_for(f"{r} nova services",
             lambda: services_up(ks, f"{nova_url}/os-services",
                                 {"nova-conductor", "nova-scheduler", "nova-compute"}),
             timeout=400, name=f"{r}-nova-api")
    # the compute node must be in placement before it can be mapped into the cell
    wait_for(f"{r} compute in placement", lambda: api_get(
        ks, f"http://{HOST}:{reg['placement']}/resource_providers",
        {"OpenStack-API-Version": "placement 1.10"})["resource_providers"], name=f"{r}-nova-compute")
    d = ETC / r / "nova"
    once(f"{r}-nova-discover", [[sbin("nova-manage"), "--config-file", str(d / "nova.conf"),
                                 "cell_v2", "discover_hosts"]])
    wait_for(f"{r} hypervisor visible",
             lambda: api_get(ks, f"{nova_url}/os-hypervisors")["hypervisors"], name=f"{r}-nova-api")


def public_network(r: str, ks: KS) -> None:
    """An external flat network per region, for routers' gateways and floating IPs."""
    url = f"http://{HOST}:{REGIONS[r]['neutron']}/v2.0"
    if api_get(ks, f"{url}/networks?name=public")["networks"]:
        return
    net = api_post(ks, f"{url}/networks", {"network": {
        "name": "public", "router:external": True, "provider:network_type": "flat",
        "provider:physical_network": "physnet1", "shared": False}})["network"]
    api_post(ks, f"{url}/subnets", {"subnet": {
        "name": "public-subnet", "network_id": net["id"], "ip_version": 4,
        "cidr": PUBLIC_CIDR[r], "enable_dhcp": False}})
    log(f"{r}: public network created")


def clouds_yaml() -> Path:
    common = {"auth_url": f"{KEYSTONE}/v3", "username": "admin", "password": PW,
              "project_name": "admin", "user_domain_name": "Default", "project_domain_name": "Default"}
    clouds = {"haven-lab": {"auth": common, "regions": [r["name"] for r in REGIONS.values()],
                            "identity_api_version": 3, "interface": "public"}}
    for r, reg in REGIONS.items():
        clouds[f"haven-lab-{r}"] = {"auth": common, "region_name": reg["name"],
                                    "identity_api_version": 3, "interface": "public"}
    lab = {"state_dir": str(STATE), "backup_store": str(BACKUP_STORE),
           "nfs_shares": {REGIONS[r]["name"]: str(nfs_share(r)[1]) for r in REGIONS}}
    p = STATE / "clouds.yaml"
    # JSON is YAML; no PyYAML needed under Debian's python
    p.write_text(json.dumps({"clouds": clouds, "haven_lab": lab}, indent=2) + "\n")
    # sourced by scripts/dev.sh after up: tells the tests where the lab is
    (STATE / "env").write_text(f"export HAVEN_OS_CLOUDS={p}\n")
    return p


# --------------------------------------------------------------------------- commands

INFRA = ["mysqld", "rabbitmq", "memcached", "keystone", "barbican"]
ORDER = INFRA + [
    f"{r}-{s}" for r in REGIONS for s in (
        "placement", "glance-api", "neutron-server", "cinder-api", "cinder-scheduler",
        "cinder-volume", "cinder-backup", "nova-api", "nova-conductor", "nova-scheduler", "nova-compute")
] + [f"r2-swift-{s}" for s in ("account", "container", "object", "proxy")]


def up(identity_only: bool = False) -> None:
    t0 = time.time()
    IDENTITY_ENV.unlink(missing_ok=True)  # written again once Keystone is ready
    run(["bash", str(HERE / "install.sh")], env={**os.environ, "HAVEN_OS_STATE": str(STATE)})
    log(f"install ok ({time.time() - t0:.1f}s)")
    prepare()
    mysql()
    memcached()
    keystone()
    keystone_catalog()
    keystone_tenancy()
    barbican()
    identity_ready()
    log(f"identity up in {time.time() - t0:.1f}s")
    if identity_only:
        return
    rabbitmq()
    # Nova caches the catalog: every endpoint is registered before any Nova starts.
    for r in REGIONS:
        placement(r)
        glance(r)
        neutron(r)
        cinder(r)
    swift()
    for r in REGIONS:
        nova(r)
    ks = KS()
    for r in REGIONS:
        region_ready(r, ks)
        public_network(r, ks)
    p = clouds_yaml()
    log(f"lab up in {time.time() - t0:.1f}s; clouds.yaml: {p}")


def down() -> None:
    # the OpenStack services all at once (SIGTERM, then SIGKILL after 20 s), then the
    # infrastructure they need to shut down cleanly, one by one
    services = [n for n in reversed(ORDER) if n not in INFRA]
    running = {n: p for n in services if (p := pid_of(n))}
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in running.values():
            try:
                os.killpg(p, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + 20
        while time.time() < deadline and any(pid_of(n) for n in running):
            time.sleep(0.2)
        if not any(pid_of(n) for n in running):
            break
    for n, p in running.items():
        log(f"stopped {n} (pid {p})")
    for name in reversed(ORDER):
        stop(name)
    # daemonised children and strays (epmd, privsep helpers, a daemon whose PID file was lost)
    strays = ours()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in strays:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + 10
        while time.time() < deadline and (strays := ours()):
            time.sleep(0.2)
        if not strays:
            break
    if strays:
        log(f"still running: {strays}")
    for r in REGIONS:
        m = RUN / f"{r}-share.mount"
        if m.exists():
            mnt = m.read_text().strip()
            if is_mounted(Path(mnt)):
                run(["umount", mnt], check=False)
                log(f"unmounted {mnt}")
            m.unlink()


def status() -> int:
    bad = 0
    for name in ORDER:
        pid = pid_of(name)
        print(f"{name:24s} {'running pid ' + str(pid) if pid else 'DOWN'}")
        bad += pid is None
    return 1 if bad else 0


def main() -> int:
    if os.geteuid() != 0:
        raise SystemExit("the lab runs as root (loop mounts, MariaDB, RabbitMQ)")
    cmd = sys.argv[1] if len(sys.argv) > 1 else "up"
    STATE.mkdir(parents=True, exist_ok=True)
    for d in (RUN, LOG):
        d.mkdir(parents=True, exist_ok=True)
    if cmd == "up":
        up(identity_only="--identity" in sys.argv[2:])
    elif cmd == "down":
        down()
    elif cmd == "status":
        return status()
    else:
        raise SystemExit(f"usage: {sys.argv[0]} up [--identity]|down|status")
    return 0


if __name__ == "__main__":
    sys.exit(main())
