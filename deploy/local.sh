#!/usr/bin/env bash
# The production topology without containers: one PostgreSQL database, one PIN secret, a
# migration run alone, then two replicas of the same binary on two ports, in the background.
#
#   deploy/local.sh up       create the database (if missing) and the PIN secret (if missing),
#                            migrate, start both replicas, wait until each is ready
#   deploy/local.sh status   what runs, where, and whether it answers
#   deploy/local.sh down     stop both replicas and wait until they have exited
#   deploy/local.sh down --drop
#                            ... then drop the database and forget its bootstrap key
#
# Settings (environment):
#   MANDATE_BIN                binary to run (default target/debug/mandate of this checkout;
#                              `cargo build` first)
#   MANDATE_LOCAL_ADMIN_URL    PostgreSQL URL used to create and drop the database
#                              (default postgres://postgres@127.0.0.1:5432/test); the replicas
#                              use the same server, user and options with the database below
#   MANDATE_LOCAL_DB           database name (default mandate_local)
#   MANDATE_LOCAL_DIR          state: PIN secret, bootstrap key, pid files, logs
#                              (default target/mandate-local/<database name>)
#   MANDATE_LOCAL_PORTS        the replicas' gRPC ports (default "50061 50062")
#   MANDATE_LOCAL_METRICS_PORTS  their metrics ports (default "9471 9472")
#   MANDATE_LOCAL_PROBE_PORTS  their probe ports (default "9481 9482")
#   MANDATE_LOCAL_HTTP_PORTS   their HTTP/JSON ports (default "8091 8092")
#   MANDATE_LOCAL_TIMEOUT      seconds to wait for a replica to be ready, or to exit (default 30)
# Any other MANDATE_* setting in the environment (MANDATE_CACHE_SIZE, ...) reaches the replicas.
# Needs psql. Readiness is asked with `mandate probe` where the binary has it, else with grpcurl
# (gRPC health) where it is installed, else read from the replica's log.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Paths given relative to where the script is called from.
absolute() { case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s/%s\n' "$PWD" "$1" ;; esac; }
bin=$(absolute "${MANDATE_BIN:-$repo/target/debug/mandate}")
admin_url=${MANDATE_LOCAL_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/test}
db=${MANDATE_LOCAL_DB:-mandate_local}
dir=$(absolute "${MANDATE_LOCAL_DIR:-$repo/target/mandate-local/$db}")
cd "$repo"
read -r -a ports <<<"${MANDATE_LOCAL_PORTS:-50061 50062}"
read -r -a metrics_ports <<<"${MANDATE_LOCAL_METRICS_PORTS:-9471 9472}"
read -r -a probe_ports <<<"${MANDATE_LOCAL_PROBE_PORTS:-9481 9482}"
read -r -a http_ports <<<"${MANDATE_LOCAL_HTTP_PORTS:-8091 8092}"
timeout_secs=${MANDATE_LOCAL_TIMEOUT:-30}
replicas=(1 2)

secret_file=$dir/pin-secret
key_file=$dir/bootstrap-key

say() { printf 'local.sh: %s\n' "$*"; }
die() {
    printf 'local.sh: error: %s\n' "$*" >&2
    exit 1
}

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
}

check_settings() {
    [[ $db =~ ^[a-z_][a-z0-9_]{0,62}$ ]] ||
        die "MANDATE_LOCAL_DB must be a plain lower-case identifier, got '$db'"
    [ "${#ports[@]}" -eq 2 ] || die "MANDATE_LOCAL_PORTS must name two ports"
    [ "${#metrics_ports[@]}" -eq 2 ] || die "MANDATE_LOCAL_METRICS_PORTS must name two ports"
    [ "${#probe_ports[@]}" -eq 2 ] || die "MANDATE_LOCAL_PROBE_PORTS must name two ports"
    [ "${#http_ports[@]}" -eq 2 ] || die "MANDATE_LOCAL_HTTP_PORTS must name two ports"
    [[ $timeout_secs =~ ^[0-9]+$ ]] || die "MANDATE_LOCAL_TIMEOUT must be a number of seconds"
    local admin_db=${admin_url%%\?*}
    admin_db=${admin_db#*://}
    [ "${admin_db#*/}" != "$db" ] || die "MANDATE_LOCAL_DB must not be the admin URL's database"
}

# The replicas' URL: the admin URL with its database replaced (user, host, port and query kept).
database_url() {
    local base=${admin_url%%\?*}
    local query=${admin_url#"$base"}
    local scheme=${base%%://*}
    local rest=${base#*://}
    local authority=${rest%%/*}
    printf '%s://%s/%s%s\n' "$scheme" "$authority" "$db" "$query"
}

psql_admin() { psql "$admin_url" -X -q -v ON_ERROR_STOP=1 -At "$@"; }

database_exists() {
    [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" = 1 ]
}

pid_file() { printf '%s/replica-%s.pid\n' "$dir" "$1"; }
log_file() { printf '%s/replica-%s.log\n' "$dir" "$1"; }
port_of() { printf '%s\n' "${ports[$(($1 - 1))]}"; }
metrics_port_of() { printf '%s\n' "${metrics_ports[$(($1 - 1))]}"; }
probe_port_of() { printf '%s\n' "${probe_ports[$(($1 - 1))]}"; }
http_port_of() { printf '%s\n' "${http_ports[$(($1 - 1))]}"; }

# The pid in a replica's pid file, when that process is alive and is a mandate server.
running_pid() {
    local file pid state
    file=$(pid_file "$1")
    [ -f "$file" ] || return 1
    pid=$(<"$file")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [ -r "/proc/$pid/cmdline" ] || return 1
    # A zombie has exited already; a reused pid is another program.
    state=$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null) || return 1
    [ "$state" != Z ] || return 1
    # Started as `<binary> serve`; compared without the binary's path, so that `down` stops
    # what `up` started even under another MANDATE_BIN.
    [ "$(tr '\0' '\n' <"/proc/$pid/cmdline" | sed -n 2p)" = serve ] || return 1
    printf '%s\n' "$pid"
}

# Whether the binary has `mandate probe` (asked once).
probe_known=
has_probe() {
    if [ -z "$probe_known" ]; then
        if "$bin" help 2>/dev/null | grep -qE '^  probe( |$)'; then probe_known=yes; else probe_known=no; fi
    fi
    [ "$probe_known" = yes ]
}

# Whether replica $1 answers: its database answers and it serves gRPC.
ready() {
    local n=$1
    if has_probe; then
        MANDATE_PROBE_LISTEN="127.0.0.1:$(probe_port_of "$n")" "$bin" probe >/dev/null 2>&1
    elif command -v grpcurl >/dev/null; then
        grpcurl -plaintext -max-time 2 "127.0.0.1:$(port_of "$n")" grpc.health.v1.Health/Check 2>/dev/null |
            grep -q '"SERVING"'
    else
        grep -q 'serving mandate.v1' "$(log_file "$n")" 2>/dev/null
    fi
}

wait_ready() {
    local n=$1 pid=$2 deadline=$((SECONDS + timeout_secs))
    until ready "$n"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            say "replica $n exited while starting; the end of $(log_file "$n"):" >&2
            tail -n 20 "$(log_file "$n")" >&2 || true
            return 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            say "replica $n is not ready after ${timeout_secs}s; the end of $(log_file "$n"):" >&2
            tail -n 20 "$(log_file "$n")" >&2 || true
            return 1
        fi
        sleep 0.2
    done
}

# The settings of this topology: the state dir's secret, never one inherited.
mandate_env=(env -u MANDATE_PIN_SECRET
    "DATABASE_URL=$(database_url)"
    "MANDATE_PIN_SECRET_FILE=$secret_file"
    "MANDATE_BOOTSTRAP_KEY_FILE=$key_file"
    "MANDATE_LOG_FORMAT=${MANDATE_LOG_FORMAT:-text}"
    NO_COLOR=1)

start_replica() {
    local n=$1 pid
    if pid=$(running_pid "$n"); then
        say "replica $n already runs (pid $pid)"
        return 0
    fi
    : >"$(log_file "$n")"
    # A simple command in the background: its pid ($!) is the server's own, after env and
    # nohup exec it.
    "${mandate_env[@]}" \
        "MANDATE_LISTEN=127.0.0.1:$(port_of "$n")" \
        "MANDATE_METRICS_LISTEN=127.0.0.1:$(metrics_port_of "$n")" \
        "MANDATE_PROBE_LISTEN=127.0.0.1:$(probe_port_of "$n")" \
        "MANDATE_HTTP_LISTEN=127.0.0.1:$(http_port_of "$n")" \
        nohup "$bin" serve </dev/null >>"$(log_file "$n")" 2>&1 &
    printf '%s\n' "$!" >"$(pid_file "$n")"
}

stop_replica() {
    local n=$1 pid deadline
    if ! pid=$(running_pid "$n"); then
        rm -f "$(pid_file "$n")"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    # The server lets calls in flight finish (MANDATE_SHUTDOWN_GRACE_MS, 10 s by default).
    deadline=$((SECONDS + timeout_secs))
    while running_pid "$n" >/dev/null; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            say "replica $n (pid $pid) did not stop within ${timeout_secs}s: killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
            deadline=$((SECONDS + 5))
            while running_pid "$n" >/dev/null; do
                [ "$SECONDS" -lt "$deadline" ] || die "replica $n (pid $pid) survived SIGKILL"
                sleep 0.1
            done
            break
        fi
        sleep 0.1
    done
    rm -f "$(pid_file "$n")"
    say "replica $n stopped (pid $pid)"
}

cmd_up() {
    [ -x "$bin" ] || die "no server binary at $bin: run 'cargo build' or set MANDATE_BIN"
    command -v psql >/dev/null || die "psql (PostgreSQL's client) is needed"
    mkdir -p "$dir"
    chmod 700 "$dir"

    if database_exists; then
        say "database $db exists"
    else
        psql_admin -c "CREATE DATABASE \"$db\""
        say "created database $db"
    fi

    if [ ! -s "$secret_file" ]; then
        (
            umask 077
            od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$secret_file.new"
            echo >>"$secret_file.new"
            mv "$secret_file.new" "$secret_file"
        )
        say "generated the PIN secret $secret_file"
    fi

    "${mandate_env[@]}" MANDATE_METRICS_LISTEN=off MANDATE_PROBE_LISTEN=off MANDATE_HTTP_LISTEN=off "$bin" migrate >>"$dir/migrate.log" 2>&1 ||
        {
            tail -n 20 "$dir/migrate.log" >&2
            die "migration failed (log: $dir/migrate.log)"
        }
    say "migrated $db"

    local n pid failed=0 started=()
    for n in "${replicas[@]}"; do
        if running_pid "$n" >/dev/null; then
            say "replica $n already runs (pid $(running_pid "$n"))"
        else
            start_replica "$n"
            started+=("$n")
        fi
    done
    for n in "${replicas[@]}"; do
        pid=$(<"$(pid_file "$n")")
        if wait_ready "$n" "$pid"; then
            say "replica $n ready: grpc 127.0.0.1:$(port_of "$n"), metrics 127.0.0.1:$(metrics_port_of "$n"), pid $pid, log $(log_file "$n")"
        else
            failed=1
        fi
    done
    if [ "$failed" = 1 ]; then
        for n in "${started[@]}"; do stop_replica "$n"; done
        die "not every replica started; stopped the ones this run started"
    fi

    if [ -s "$key_file" ]; then
        say "bootstrap API key (every scope): $key_file"
    else
        say "no bootstrap key file: the database had keys already; create one with"
        say "  DATABASE_URL=$(database_url) $bin keys create --name me --scope portal --scope staff"
    fi
    cat <<EOF
Try:
  KEY=\$(cat $key_file)
  grpcurl -plaintext 127.0.0.1:$(port_of 1) list
  grpcurl -plaintext -H "authorization: Bearer \$KEY" -d '{"external_subject": "oidc|marie", "display_name": "Marie Tremblay", "email": "marie@example.ca"}' 127.0.0.1:$(port_of 1) mandate.v1.IdentityService/RegisterCustomer
Stop with: deploy/local.sh down   (add --drop to drop $db)
EOF
}

cmd_down() {
    local drop=0 n
    while [ $# -gt 0 ]; do
        case $1 in
        --drop) drop=1 ;;
        *) die "down: unknown argument '$1'" ;;
        esac
        shift
    done
    for n in "${replicas[@]}"; do stop_replica "$n"; done
    if [ "$drop" = 1 ]; then
        command -v psql >/dev/null || die "psql (PostgreSQL's client) is needed"
        psql_admin -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)"
        # The key belonged to the dropped database; the PIN secret may serve a new one.
        rm -f "$key_file"
        say "dropped database $db"
    fi
}

cmd_status() {
    local n pid code=0
    say "database $(database_url | sed -E 's#//([^:/@]*):[^@]*@#//\1:***@#')"
    for n in "${replicas[@]}"; do
        if pid=$(running_pid "$n"); then
            if ready "$n"; then
                say "replica $n: ready, pid $pid, grpc 127.0.0.1:$(port_of "$n"), metrics 127.0.0.1:$(metrics_port_of "$n")"
            else
                say "replica $n: running but not ready, pid $pid (log $(log_file "$n"))"
                code=1
            fi
        else
            say "replica $n: not running"
            code=1
        fi
    done
    if [ -s "$key_file" ]; then say "bootstrap key: $key_file"; fi
    return "$code"
}

check_settings
case ${1:-} in
up)
    shift
    [ $# -eq 0 ] || die "up takes no arguments"
    cmd_up
    ;;
down)
    shift
    cmd_down "$@"
    ;;
status)
    shift
    cmd_status
    ;;
-h | --help | help) usage ;;
*)
    usage >&2
    exit 2
    ;;
esac
