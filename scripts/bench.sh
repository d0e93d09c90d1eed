#!/usr/bin/env bash
# make bench: the gateway against a bare fasthttp proxy loop and against the
# upstream directly, in ONE run on this machine, then SSE streams through the
# gateway. Everything listens on 127.0.0.1 and every load run is bounded.
#
#   HTTP: 100 B and 16 KiB responses, 64 and 256 connections, and POSTs of
#         300 B echoed back (an MCP call's size), 64 connections; after a
#         warm-up, ROUNDS rounds of ROUND_SECS seconds per target: median
#         requests/s, median p99 latency, and the CPU time the measured
#         process (upstream for "direct", else the proxy) spent per request
#         over all rounds, from /proc/<pid>/stat utime+stime. Each round runs
#         direct, then bare and gateway back to back, which of the two goes
#         first alternating from round to round, so both see the same burst
#         of other load on the machine. "paired" is the median over rounds of
#         gateway/bare req/s within a round, with the lowest and highest
#         round in "range". HTTP=0 skips this part.
#   REC:  session recording on vs off (issue #5): two gateways, one with
#         storage enabled on its defaults (synced Pebble batches of 50),
#         one without, GET /json (a small JSON answer, an MCP call's size)
#         with each request carrying one of 1,000 Mcp-Session-Id values
#         (loadgen -sessions), REC_CONNS connections; ROUNDS rounds of
#         ROUND_SECS per gateway, the two back to back, which goes first
#         alternating. "paired" is the median over rounds of on/off req/s.
#         The recording gateway's events written and shed (from its
#         /metrics) show that every request was recorded. RECORD=0 skips it.
#   SSE:  1,000 and 5,000 concurrent endless streams (an event every
#         SSE_INTERVAL per stream, opened over one second per thousand,
#         held for SSE_SECS in all), straight from the upstream and then
#         through a freshly started gateway: events/s, id order, and the
#         gateway's peak RSS (VmHWM) minus its idle RSS, per open stream.
#
# Needs bin/gateway, bin/upstream, bin/loadgen, bin/bareproxy (make bench
# builds them) and python3 for the table.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-bin}
ROUNDS=${ROUNDS:-9} # the paired median of 5 rounds still moved by ±0.05 between runs on a shared 2-core box
ROUND_SECS=${ROUND_SECS:-1.5}
SSE_SECS=${SSE_SECS:-12}
SSE_INTERVAL=${SSE_INTERVAL:-100ms}
SSE_STREAMS=${SSE_STREAMS:-"1000 5000"}
HTTP=${HTTP:-1} # HTTP=0 runs only the SSE part
RECORD=${RECORD:-1} # RECORD=0 skips the recording on/off part
REC_CONNS=${REC_CONNS:-64}
# HTTP rows, SIZE:CONNS: GET /bytes?n=SIZE, or with SIZE postN a POST of N
# bytes to /echo (an MCP call's shape: a small JSON-RPC body).
HTTP_ROWS=${HTTP_ROWS:-"100:64 100:256 16384:64 16384:256 post300:64"}
VERBOSE=${VERBOSE:-0} # VERBOSE=1 prints loadgen's line for every HTTP round

for b in gateway upstream loadgen bareproxy; do
	if [[ ! -x $BIN/$b ]]; then
		echo "bench: $BIN/$b is missing; build it first (make build; go build -o $BIN/bareproxy ./internal/bench/bareproxy)" >&2
		exit 1
	fi
done
command -v python3 >/dev/null || { echo "bench: python3 is needed to print the table" >&2; exit 1; }

# Every SSE stream is one connection at the client, two at the gateway and
# one at the upstream.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
max_streams=0
for n in $SSE_STREAMS; do ((n > max_streams)) && max_streams=$n; done
if (($(ulimit -n) < 2 * max_streams + 512)); then
	echo "bench: ulimit -n is $(ulimit -n); $((2 * max_streams + 512)) file descriptors are needed for $max_streams streams" >&2
	exit 1
fi

TMP=$(mktemp -d)
PIDS=()
cleanup() {
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
	rm -rf "$TMP"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP_PORT=$(free_port); BARE_PORT=$(free_port); GW_PORT=$(free_port); ADMIN_PORT=$(free_port)
REC_PORT=$(free_port); REC_ADMIN_PORT=$(free_port)

wait_http() { # url pid name
	for _ in $(seq 100); do
		curl -sf -o /dev/null "$1" && return 0
		kill -0 "$2" 2>/dev/null || { echo "bench: $3 exited; its log:" >&2; cat "$TMP/$3.log" >&2; exit 1; }
		sleep 0.1
	done
	echo "bench: $3 did not answer $1" >&2
	exit 1
}

cat >"$TMP/gateway.yaml" <<EOF
listen: 127.0.0.1:$GW_PORT
admin: {listen: 127.0.0.1:$ADMIN_PORT}
limits: {max_conns: 20000}
upstreams:
  - name: demo
    targets: ["127.0.0.1:$UP_PORT"]
    max_conns_per_target: 1024
    max_streams_per_target: $((max_streams + 100))
routes:
  - {name: default, match: {path_prefix: /}, upstream: demo}
storage: {enabled: false, path: $TMP/data}
log: {level: warn}
EOF
"$BIN/gateway" validate -config "$TMP/gateway.yaml" >/dev/null
# The recording gateway: the same, with storage on its defaults.
sed -e "s/^listen: .*/listen: 127.0.0.1:$REC_PORT/" -e "s/^admin: .*/admin: {listen: 127.0.0.1:$REC_ADMIN_PORT}/" \
	-e "s|^storage: .*|storage: {enabled: true, path: $TMP/recdata}|" "$TMP/gateway.yaml" >"$TMP/gateway-rec.yaml"
"$BIN/gateway" validate -config "$TMP/gateway-rec.yaml" >/dev/null

"$BIN/upstream" -listen "127.0.0.1:$UP_PORT" >"$TMP/upstream.log" 2>&1 &
UP_PID=$!; PIDS+=("$UP_PID")
"$BIN/bareproxy" -listen "127.0.0.1:$BARE_PORT" -upstream "127.0.0.1:$UP_PORT" >"$TMP/bareproxy.log" 2>&1 &
BARE_PID=$!; PIDS+=("$BARE_PID")
start_gateway() {
	"$BIN/gateway" run -config "$TMP/gateway.yaml" >"$TMP/gateway.log" 2>&1 &
	GW_PID=$!; PIDS+=("$GW_PID")
	wait_http "http://127.0.0.1:$GW_PORT/health" "$GW_PID" gateway
}
stop_gateway() { kill "$GW_PID"; wait "$GW_PID" 2>/dev/null || true; }
wait_http "http://127.0.0.1:$UP_PORT/health" "$UP_PID" upstream
wait_http "http://127.0.0.1:$BARE_PORT/health" "$BARE_PID" bareproxy
start_gateway

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
CLK_TCK=$(getconf CLK_TCK)
RESULTS=$TMP/results.jsonl

echo "bench: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); HTTP: $ROUNDS rounds of ${ROUND_SECS}s per row; loadgen, proxies and upstream share the machine" >&2
port_of() { case $1 in direct) echo "$UP_PORT" ;; bare) echo "$BARE_PORT" ;; gateway) echo "$GW_PORT" ;; esac; }
pid_of() { case $1 in direct) echo "$UP_PID" ;; bare) echo "$BARE_PID" ;; gateway) echo "$GW_PID" ;; esac; }
# measure PID JSON-FIELDS LOADGEN-ARGS...: one measured round of ROUND_SECS,
# appended to RESULTS with the CPU time PID spent in it. loadgen's one-line
# summary goes to stderr: kept out of the table unless VERBOSE=1, shown
# when loadgen fails.
measure() {
	local pid=$1 fields=$2 out c0 c1
	shift 2
	c0=$(cpu_ticks "$pid")
	if ! out=$("$BIN/loadgen" -mode http "$@" -d "${ROUND_SECS}s" -json 2>"$TMP/loadgen.err"); then
		cat "$TMP/loadgen.err" >&2
		exit 1
	fi
	((VERBOSE)) && cat "$TMP/loadgen.err" >&2
	c1=$(cpu_ticks "$pid")
	echo "{$fields,\"cpu_ticks\":$((c1 - c0)),\"clk_tck\":$CLK_TCK,\"result\":$out}" >>"$RESULTS"
}
for row in $HTTP_ROWS; do
	((HTTP)) || break
	size=${row%%:*} conns=${row##*:}
	path="/bytes?n=$size" body=()
	if [[ $size == post* ]]; then
		path=/echo body=(-method POST -body "${size#post}")
	fi
	for target in direct bare gateway; do
		"$BIN/loadgen" -mode http -url "http://127.0.0.1:$(port_of $target)$path" "${body[@]}" -c "$conns" -d 500ms >/dev/null 2>&1
	done
	# bare and gateway run back to back in every round, the first of
	# the two alternating (direct bare gateway, direct gateway bare, ...),
	# so that a burst of other load on the machine hits both alike.
	for ((round = 0; round < ROUNDS; round++)); do
		order=(direct bare gateway)
		((round % 2)) && order=(direct gateway bare)
		for target in "${order[@]}"; do
			measure "$(pid_of $target)" "\"kind\":\"http\",\"target\":\"$target\",\"size\":\"$size\",\"round\":$round" \
				-url "http://127.0.0.1:$(port_of $target)$path" "${body[@]}" -c "$conns"
		done
	done
done

# Recording on vs off: both gateways run only for this part, so that the
# idle one does not sit beside the HTTP rows above.
metric_sum() { # admin port, metric name: the sum of its samples
	curl -sf "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m || index($1, m "{") == 1 {s += $2} END {printf "%d", s}'
}
if ((RECORD)); then
	"$BIN/gateway" run -config "$TMP/gateway-rec.yaml" >"$TMP/gateway-rec.log" 2>&1 &
	REC_PID=$!; PIDS+=("$REC_PID")
	wait_http "http://127.0.0.1:$REC_PORT/health" "$REC_PID" gateway-rec
	rec_url() { case $1 in off) echo "http://127.0.0.1:$GW_PORT/json" ;; on) echo "http://127.0.0.1:$REC_PORT/json" ;; esac; }
	rec_pid() { case $1 in off) echo "$GW_PID" ;; on) echo "$REC_PID" ;; esac; }
	for target in off on; do
		"$BIN/loadgen" -mode http -url "$(rec_url $target)" -c "$REC_CONNS" -sessions 1000 -d 500ms >/dev/null 2>&1
	done
	sleep 0.3 # the warm-up's last events
	written0=$(metric_sum "$REC_ADMIN_PORT" wasmgate_store_events_written_total)
	shed0=$(metric_sum "$REC_ADMIN_PORT" wasmgate_store_shed_total)
	exhausted0=$(metric_sum "$REC_ADMIN_PORT" wasmgate_store_exhausted_total)
	for ((round = 0; round < ROUNDS; round++)); do
		order=(off on)
		((round % 2)) && order=(on off)
		for target in "${order[@]}"; do
			measure "$(rec_pid $target)" "\"kind\":\"rec\",\"target\":\"$target\",\"round\":$round" \
				-url "$(rec_url $target)" -c "$REC_CONNS" -sessions 1000
		done
	done
	sleep 0.5 # the last batches' exchange window, flush interval and sync
	echo "{\"kind\":\"rec_store\",\"written\":$(($(metric_sum "$REC_ADMIN_PORT" wasmgate_store_events_written_total) - written0)),\"shed\":$(($(metric_sum "$REC_ADMIN_PORT" wasmgate_store_shed_total) - shed0)),\"exhausted\":$(($(metric_sum "$REC_ADMIN_PORT" wasmgate_store_exhausted_total) - exhausted0))}" >>"$RESULTS"
	kill "$REC_PID"; wait "$REC_PID" 2>/dev/null || true
fi

rss_kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
for n in $SSE_STREAMS; do
	ramp=$(((n + 999) / 1000))
	expected=$(python3 -c "import re,sys; v,u=re.fullmatch(r'([0-9.]+)(ms|s)','$SSE_INTERVAL').groups(); print($n/(float(v)/(1000 if u=='ms' else 1)))")
	# The same streams straight from the upstream: what this machine
	# delivers without a proxy in between.
	out=$("$BIN/loadgen" -mode sse -url "http://127.0.0.1:$UP_PORT/sse?n=0&interval=$SSE_INTERVAL" \
		-streams "$n" -ramp "${ramp}s" -d "${SSE_SECS}s" -json)
	echo "{\"kind\":\"sse_direct\",\"streams\":$n,\"expected\":$expected,\"result\":$out}" >>"$RESULTS"

	# A fresh gateway per level, so its peak RSS is this level's.
	stop_gateway
	start_gateway
	sleep 1
	idle=$(rss_kib "$GW_PID" VmRSS)
	# Where the memory goes: the Go runtime's view, idle and with every
	# stream open (scraped from the admin /metrics).
	curl -sf "http://127.0.0.1:$ADMIN_PORT/metrics" >"$TMP/metrics.idle.$n" || true
	if ((ramp + 3 < SSE_SECS)); then
		(sleep $((ramp + 3)) && curl -sf "http://127.0.0.1:$ADMIN_PORT/metrics" >"$TMP/metrics.open.$n") &
	else
		true & # too short a run to scrape while every stream is open
	fi
	scrape=$!
	out=$("$BIN/loadgen" -mode sse -url "http://127.0.0.1:$GW_PORT/sse?n=0&interval=$SSE_INTERVAL" \
		-streams "$n" -ramp "${ramp}s" -d "${SSE_SECS}s" -json)
	peak=$(rss_kib "$GW_PID" VmHWM)
	wait "$scrape" || true
	gostats() { # file -> {"goroutines":..,"stack":..,"heap":..}
		awk '$1=="go_goroutines"{g=$2} $1=="go_memstats_stack_inuse_bytes"{s=$2} $1=="go_memstats_heap_inuse_bytes"{h=$2}
			END{printf "{\"goroutines\":%d,\"stack\":%d,\"heap\":%d}", g, s, h}' "$1" 2>/dev/null || echo null
	}
	echo "{\"kind\":\"sse\",\"streams\":$n,\"expected\":$expected,\"idle_rss_kib\":$idle,\"peak_rss_kib\":$peak,\"go_idle\":$(gostats "$TMP/metrics.idle.$n"),\"go_open\":$(gostats "$TMP/metrics.open.$n"),\"result\":$out}" >>"$RESULTS"
done

python3 - "$RESULTS" "$SSE_INTERVAL" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
from statistics import median
groups = {}
for r in rows:
    if r["kind"] == "http":
        groups.setdefault((r["size"], r["result"]["conns"], r["target"]), []).append(r)
def agg(rs):
    reqs = sum(r["result"]["requests"] for r in rs)
    ticks = sum(r["cpu_ticks"] for r in rs)
    errs = {}
    for r in rs:
        for k, v in r["result"]["errors"].items():
            errs[k] = errs.get(k, 0) + v
    return {"rps": median(r["result"]["rps"] for r in rs),
            "rps_all": [r["result"]["rps"] for r in rs],
            "p99": median(r["result"]["p99_us"] for r in rs),
            "cpu_us": ticks / rs[0]["clk_tck"] * 1e6 / reqs if reqs else float("nan"),
            "errors": " ".join(f"{k}={v}" for k, v in sorted(errs.items())) or "-"}
http = {k: agg(v) for k, v in groups.items()}
def paired(size, conns):
    # gateway/bare within each round (the two ran back to back), median over
    # rounds: steadier than the ratio of medians when other load drifts.
    by = {}
    for r in rows:
        if r["kind"] == "http" and r["size"] == size and r["result"]["conns"] == conns:
            by.setdefault(r["round"], {})[r["target"]] = r["result"]["rps"]
    rs = [v["gateway"] / v["bare"] for v in by.values() if v.get("bare") and "gateway" in v]
    return (median(rs), min(rs), max(rs)) if rs else (0, 0, 0)
if http:
  print("HTTP (GET /bytes?n=SIZE, or POST of SIZE to /echo; median req/s of the rounds; CPU-µs/req of the measured process: upstream for direct, the proxy otherwise)")
  print(f"{'size':>8} {'conns':>5} {'target':<8} {'req/s':>9} {'p99 µs':>8} {'CPU-µs/req':>10}  {'gw/bare':>7} {'paired':>6} {'range':>9} {'gw/direct':>9} {'CPU gw/bare':>11}  rounds req/s; errors")
rowkeys = []
for r in rows:
    if r["kind"] == "http" and (r["size"], r["result"]["conns"]) not in rowkeys:
        rowkeys.append((r["size"], r["result"]["conns"]))
def label_of(size):
    if size.startswith("post"):
        return "POST" + size[4:] + "B"
    n = int(size)
    return f"{n >> 10}KiB" if n >= 1024 and n % 1024 == 0 else f"{n}B"
for size, conns in rowkeys:
        for t in ("direct", "bare", "gateway"):
            a = http[(size, conns, t)]
            if t == "gateway":
                b, d = http[(size, conns, "bare")]["rps"], http[(size, conns, "direct")]["rps"]
                cb = http[(size, conns, "bare")]["cpu_us"]
                pm, lo, hi = paired(size, conns)
                ratios = f"{a['rps']/b if b else 0:7.2f} {pm:6.2f} {f'{lo:.2f}-{hi:.2f}':>9} {a['rps']/d if d else 0:9.2f} {a['cpu_us']/cb if cb else 0:11.2f}"
            else:
                ratios = f"{'':7} {'':6} {'':9} {'':9} {'':11}"
            label = label_of(size)
            rounds = "/".join(f"{x:.0f}" for x in a["rps_all"])
            print(f"{label:>8} {conns:>5} {t:<8} {a['rps']:9.0f} {a['p99']:8.0f} {a['cpu_us']:10.1f}  {ratios}  {rounds}; {a['errors']}")
if http:
  print()
rec = [r for r in rows if r["kind"] == "rec"]
if rec:
    by = {}
    for r in rec:
        by.setdefault(r["round"], {})[r["target"]] = r
    ratios = [v["on"]["result"]["rps"] / v["off"]["result"]["rps"] for v in by.values() if "on" in v and "off" in v and v["off"]["result"]["rps"]]
    print("Recording (GET /json, 1,000 session ids; on: storage on its defaults, sync on; CPU-µs/req of the gateway process)")
    print(f"{'gateway':<8} {'req/s':>9} {'p99 µs':>8} {'CPU-µs/req':>10}  rounds req/s; errors")
    cpu = {}
    for t in ("off", "on"):
        rs = [r for r in rec if r["target"] == t]
        a = agg(rs)
        cpu[t] = a["cpu_us"]
        print(f"{t:<8} {a['rps']:9.0f} {a['p99']:8.0f} {a['cpu_us']:10.1f}  {'/'.join(f'{x:.0f}' for x in a['rps_all'])}; {a['errors']}")
    if ratios:
        print(f"on/off req/s paired {median(ratios):.2f} (range {min(ratios):.2f}-{max(ratios):.2f}); gateway CPU on-off {cpu['on'] - cpu['off']:.1f} µs/req")
    st = next((r for r in rows if r["kind"] == "rec_store"), None)
    if st:
        on_reqs = sum(r["result"]["requests"] for r in rec if r["target"] == "on")
        print(f"recorded: {st['written']} events written for {on_reqs} requests in the rounds ({st['written'] / max(on_reqs, 1):.2f} per request), shed {st['shed']}, exhausted {st['exhausted']}")
    print()
if any(r["kind"] == "sse" for r in rows):
  print(f"SSE (endless streams, one event per stream every {sys.argv[2]}; events/s after all streams opened; RSS of the gateway)")
  print(f"{'streams':>7} {'target':<8} {'opened':>6} {'events/s':>9} {'expected':>9} {'gw/direct':>9} {'order err':>9} {'idle RSS MiB':>12} {'peak RSS MiB':>12} {'KiB/stream':>10}  failures")
direct = {r["streams"]: r["result"] for r in rows if r["kind"] == "sse_direct"}
def fails_of(res):
    fails = {**{"open:" + k: v for k, v in res["open_failed"].items()}, **{"stream:" + k: v for k, v in res["stream_errors"].items()}}
    return " ".join(f"{k}={v}" for k, v in sorted(fails.items())) or "-"
for r in (r for r in rows if r["kind"] == "sse"):
    res = r["result"]
    d = direct.get(r["streams"])
    if d:
        print(f"{r['streams']:>7} {'direct':<8} {d['opened']:>6} {d['steady_events_per_s']:9.0f} {r['expected']:9.0f} {'':9} {d['order_errors']:>9} {'':12} {'':12} {'':10}  {fails_of(d)}")
    ratio = res['steady_events_per_s'] / d['steady_events_per_s'] if d and d['steady_events_per_s'] else float("nan")
    per = (r["peak_rss_kib"] - r["idle_rss_kib"]) / max(res["peak_open"], 1)
    f = fails_of(res)
    print(f"{r['streams']:>7} {'gateway':<8} {res['opened']:>6} {res['steady_events_per_s']:9.0f} {r['expected']:9.0f} {ratio:9.2f} {res['order_errors']:>9} {r['idle_rss_kib']/1024:12.1f} {r['peak_rss_kib']/1024:12.1f} {per:10.1f}  {f}")
    gi, go = r.get("go_idle"), r.get("go_open")
    if gi and go and go["goroutines"] and res["peak_open"]:
        n = res["peak_open"]
        print(f"{'':7} with all open: {(go['goroutines']-gi['goroutines'])/n:.1f} goroutines, "
              f"{(go['stack']-gi['stack'])/1024/n:.1f} KiB stack, {(go['heap']-gi['heap'])/1024/n:.1f} KiB heap in use per stream")
PY
