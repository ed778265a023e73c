#!/usr/bin/env bash
# A Citus cluster for the tests: a coordinator and two workers on loopback,
# with schema-based sharding, built from the Citus source the project keeps
# beside it (Citus is not in Debian's archive).
#
# Usage:
#   scripts/citus.sh build        build Citus into Debian's PostgreSQL 15;
#                                 does nothing when citus.so is installed
#   scripts/citus.sh start DIR    start a cluster whose data lives in DIR
#                                 (made if missing, and empty), and print
#                                 TEST_CITUS_DSN=<the coordinator's DSN>
#   scripts/citus.sh stop DIR     stop the cluster started in DIR, by the
#                                 PIDs start recorded there
#   scripts/citus.sh dsn DIR      print the coordinator's DSN again
#
# Environment:
#   CITUS_TARBALL    the source (default: citus-13.0.5.tar.gz in the
#                    project's ../shared/citus, found from the main worktree
#                    too)
#   CITUS_BUILD_DIR  where the source is unpacked and built, outside the
#                    repository (default: $XDG_CACHE_HOME/citus-build, or
#                    ~/.cache/citus-build)
#   PG_CONFIG        the PostgreSQL to build into and run (default:
#                    /usr/lib/postgresql/15/bin/pg_config)
#
# The servers run as user postgres when the script runs as root, since
# initdb and postgres refuse root. They listen on 127.0.0.1 only and trust
# every local connection: a test cluster, never one for data.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
citus_version=13.0.5
# From the README beside the tarball: a tarball that does not match is not
# the source the project tested against.
citus_sha256=b279cf8b0a0cda459653439ea61388f29e16800e23212ac55d4f17e158f61d40
pg_config="${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}"

# The packages the README lists; flex and bison because the tarball is a
# git archive, without generated parsers.
build_deps=(postgresql-server-dev-15 libcurl4-openssl-dev liblz4-dev libzstd-dev libkrb5-dev
	libselinux1-dev libpam0g-dev flex bison autoconf make gcc)

die() {
	printf 'citus.sh: %s\n' "$*" >&2
	exit 1
}

usage() {
	sed -n '/^# Usage:/,/^# The servers/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
	exit 2
}

# tarball prints the path of the Citus source. A worktree of the project
# lives elsewhere than its main checkout, whose parent holds shared/.
tarball() {
	if [ -n "${CITUS_TARBALL:-}" ]; then
		printf '%s\n' "$CITUS_TARBALL"
		return
	fi
	local candidates=("$root/../shared/citus/citus-$citus_version.tar.gz")
	local common
	if common="$(git -C "$root" rev-parse --path-format=absolute --git-common-dir 2>/dev/null)"; then
		candidates+=("$(dirname "$common")/../shared/citus/citus-$citus_version.tar.gz")
	fi
	local c
	for c in "${candidates[@]}"; do
		if [ -f "$c" ]; then
			printf '%s\n' "$c"
			return
		fi
	done
	die "no Citus source at ${candidates[*]}: set CITUS_TARBALL"
}

cmd_build() {
	local pkglibdir
	if [ -x "$pg_config" ]; then
		pkglibdir="$("$pg_config" --pkglibdir)"
		if [ -f "$pkglibdir/citus.so" ]; then
			echo "citus.so is already in $pkglibdir: nothing to build"
			return
		fi
	fi

	local missing=() p
	for p in "${build_deps[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		echo "installing ${missing[*]}"
		local sudo=()
		[ "$(id -u)" -eq 0 ] || sudo=(sudo)
		"${sudo[@]}" apt-get update -q
		DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
	fi
	pkglibdir="$("$pg_config" --pkglibdir)"

	local src
	src="$(tarball)"
	echo "$citus_sha256  $src" | sha256sum -c --quiet - || die "$src is not Citus $citus_version (sha256 differs)"

	# Outside the repository, so that no build output can be committed,
	# and kept, so that a failed build can be looked at.
	local build="${CITUS_BUILD_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/citus-build}"
	rm -rf "$build/citus-$citus_version"
	mkdir -p "$build"
	tar -xzf "$src" -C "$build"
	cd "$build/citus-$citus_version"
	./configure PG_CONFIG="$pg_config"
	# Debian builds PostgreSQL with LLVM, whose bitcode PGXS would then
	# build too, with a clang that is not installed: with_llvm=no skips
	# the bitcode, which only JIT inlining uses.
	make -j"$(nproc)" with_llvm=no
	local sudo=()
	[ "$(id -u)" -eq 0 ] || [ -w "$pkglibdir" ] || sudo=(sudo)
	"${sudo[@]}" make install with_llvm=no
	[ -f "$pkglibdir/citus.so" ] || die "make install put no citus.so in $pkglibdir"
	echo "installed Citus $citus_version into $pkglibdir"
}

# as_server runs a command as the user the servers run as.
as_server() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

# free_port prints a loopback TCP port nothing listens on. Another process
# may take it before the server binds it: start_node then tries another.
free_port() {
	local port
	for _ in $(seq 100); do
		port=$((20000 + RANDOM % 30000))
		if [ -z "$(ss -Htln "sport = :$port")" ] && ! grep -qx "$port" "$dir/ports" 2>/dev/null; then
			echo "$port" >>"$dir/ports"
			echo "$port"
			return
		fi
	done
	die "found no free port"
}

# sql runs statements on the server at port, stopping at the first error.
sql() {
	local port=$1
	shift
	psql -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres "$@"
}

dsn() { printf 'postgres://postgres@127.0.0.1:%s/postgres?sslmode=disable\n' "$1"; }

# start_node starts the server of node, whose data is in data, on port, and
# prints the port it listens on. The port was free when chosen, but another
# process may bind it first ("could not bind IPv4 address ... Address already
# in use"): the node then starts again on another free port, up to 5 times.
# The port is set in port.conf beside postgresql.conf, which includes it,
# so that a retry only rewrites that file.
start_node() {
	local bindir=$1 node=$2 data=$3 port=$4 try
	grep -q "^include_if_exists = 'port.conf'" "$data/postgresql.conf" ||
		echo "include_if_exists = 'port.conf'" >>"$data/postgresql.conf"
	for try in 1 2 3 4 5; do
		echo "port = $port" >"$data/port.conf"
		[ "$(id -u)" -ne 0 ] || chown postgres: "$data/port.conf"
		if as_server "$bindir/pg_ctl" -D "$data" -l "$dir/$node.log" -w -t 60 start >/dev/null; then
			echo "$port"
			return
		fi
		grep -q 'Address already in use' "$dir/$node.log" ||
			die "$node did not start: see $dir/$node.log"
		printf 'citus.sh: %s: port %s was taken before it bound it (try %s of 5)\n' "$node" "$port" "$try" >&2
		as_server "$bindir/pg_ctl" -D "$data" -m immediate stop >/dev/null 2>&1 || true
		mv "$dir/$node.log" "$dir/$node.log.$try"
		port="$(free_port)"
	done
	die "$node did not start on 5 free ports: see $dir/$node.log*"
}

cmd_start() {
	dir=$1
	local bindir
	bindir="$("$pg_config" --bindir)"
	[ -f "$("$pg_config" --pkglibdir)/citus.so" ] || die "Citus is not installed: run $0 build"
	if [ -e "$dir" ] && [ -n "$(ls -A "$dir")" ]; then
		die "$dir is not empty: stop the cluster in it and remove it, or name another"
	fi
	mkdir -p "$dir"
	dir="$(cd "$dir" && pwd)"
	[ "$(id -u)" -ne 0 ] || chown postgres: "$dir"
	: >"$dir/pids"

	local node port data ports=()
	for node in coordinator worker1 worker2; do
		port="$(free_port)"
		data="$dir/$node"
		as_server "$bindir/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/$node.initdb.log"
		# max_connections: the fault tests open many connections, and each
		# of the coordinator's may open one to a worker. fsync off: the
		# data is thrown away, and the tests then wait on no disk.
		cat >>"$data/postgresql.conf" <<-EOF
			listen_addresses = '127.0.0.1'
			unix_socket_directories = '$dir'
			shared_preload_libraries = 'citus'
			max_connections = 200
			fsync = off
			synchronous_commit = off
			full_page_writes = off
		EOF
		port="$(start_node "$bindir" "$node" "$data" "$port")"
		ports+=("$port")
		printf '%s %s %s %s\n' "$node" "$(head -1 "$data/postmaster.pid")" "$port" "$data" >>"$dir/pids"
	done

	for port in "${ports[@]}"; do
		sql "$port" -c 'CREATE EXTENSION citus'
	done
	sql "${ports[0]}" <<-EOF >/dev/null
		SELECT citus_set_coordinator_host('127.0.0.1', ${ports[0]});
		SELECT citus_add_node('127.0.0.1', ${ports[1]});
		SELECT citus_add_node('127.0.0.1', ${ports[2]});
		ALTER SYSTEM SET citus.enable_schema_based_sharding = on;
		SELECT pg_reload_conf();
	EOF
	dsn "${ports[0]}" >"$dir/dsn"
	echo "TEST_CITUS_DSN=$(cat "$dir/dsn")"
}

cmd_stop() {
	local dir=$1
	[ -f "$dir/pids" ] || die "no cluster was started in $dir"
	local node pid port data
	while read -r node pid port data; do
		# A PID may have been given to another process since: stop it only
		# while it is still this data directory's postmaster.
		if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$data"; then
			:
		elif kill -0 "$pid" 2>/dev/null && [ "$(head -1 "$data/postmaster.pid" 2>/dev/null)" = "$pid" ]; then
			:
		else
			echo "$node (PID $pid) is not running"
			continue
		fi
		# SIGINT is PostgreSQL's fast shutdown: sessions end, nothing waits
		# for clients to leave.
		kill -INT "$pid"
		for _ in $(seq 300); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			echo "$node (PID $pid) ignored a fast shutdown for 30 s: stopping it at once"
			kill -QUIT "$pid"
		fi
		echo "stopped $node (PID $pid, port $port)"
	done <"$dir/pids"
}

case "${1:-}" in
build) [ $# -eq 1 ] || usage; cmd_build ;;
start) [ $# -eq 2 ] || usage; cmd_start "$2" ;;
stop) [ $# -eq 2 ] || usage; cmd_stop "$2" ;;
dsn) [ $# -eq 2 ] || usage; cat "$2/dsn" ;;
*) usage ;;
esac
