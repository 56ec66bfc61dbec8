#!/usr/bin/env bash
# Renders deploy/site-cache/nginx.conf.in for one site and runs nginx with it: in the foreground
# (the default; what systemd and containers want) or as a daemon (--daemon).
#
#   run.sh --upstream URL [--upstream URL...] --listen ADDR:PORT --cache-dir DIR --cache-size SIZE
#          [--daemon] [--user USER] [--log-dir DIR] [--resolve-ttl 60s] [--branch-ttl 30s]
#          [--cdn URL]... [--render-only]
#
# --upstream    the hub or mirror, scheme://host[:port] without a path (https://huggingface.co).
#               Repeat it for fallbacks, tried in the order given; they must share the scheme and
#               answer to the first one's host name (replicas of one mirror, or plain IPs).
# --listen      where clients connect (their --endpoint): 0.0.0.0:8080, 10.1.2.3:80, [::]:8080.
# --cache-dir   holds the slice cache (bytes/), hub answers (meta/), nginx.conf, pid, hub.sock,
#               logs/ (unless --log-dir). Created if missing.
# --cache-size  bytes kept on disk: 500GiB, 2TiB, 800G, 100m ... (nginx evicts LRU beyond it).
# --user        the user nginx's workers run as when started as root (default www-data, or nobody);
#               it is given the cache and log directories.
# --cdn         a CDN origin the hub redirects to (scheme://host[:port]), kept in a pool of
#               keep-alive connections; any other CDN is still followed, on a fresh connection
#               per slice. The name is resolved when nginx starts.
# --render-only print the rendered configuration and exit (nothing is started).
#
# Stop: SIGTERM to nginx (systemd does it; with --daemon: kill "$(cat DIR/nginx.pid)").
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

die() { echo "site-cache: $*" >&2; exit 2; }

upstreams=() cdns=() listen="" cache_dir="" cache_size="" daemon=off user="" log_dir="" render_only=0
resolve_ttl=60s branch_ttl=30s pinned_ttl=1d bytes_ttl=365d inactive=30d
while [ $# -gt 0 ]; do
  case "$1" in
    --upstream) upstreams+=("${2:?}"); shift 2 ;;
    --listen) listen="${2:?}"; shift 2 ;;
    --cache-dir) cache_dir="${2:?}"; shift 2 ;;
    --cache-size) cache_size="${2:?}"; shift 2 ;;
    --daemon) daemon=on; shift ;;
    --cdn) cdns+=("${2:?}"); shift 2 ;;
    --user) user="${2:?}"; shift 2 ;;
    --log-dir) log_dir="${2:?}"; shift 2 ;;
    --resolve-ttl) resolve_ttl="${2:?}"; shift 2 ;;
    --branch-ttl) branch_ttl="${2:?}"; shift 2 ;;
    --render-only) render_only=1; shift ;;
    -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
[ ${#upstreams[@]} -gt 0 ] || die "--upstream URL is required"
[ -n "$listen" ] || die "--listen ADDR:PORT is required"
[ -n "$cache_dir" ] || die "--cache-dir DIR is required"
[ -n "$cache_size" ] || die "--cache-size SIZE is required"

# SIZE -> nginx's notation (k, m, g; no t): 500GiB -> 500g, 2TiB -> 2048g, 800G -> 800g.
size_re='^([0-9]+)([kKmMgGtT])?(i?[bB])?$'
[[ "$cache_size" =~ $size_re ]] || die "bad --cache-size '$cache_size' (e.g. 500GiB, 2TiB, 800m)"
num="${BASH_REMATCH[1]}" unit="$(echo "${BASH_REMATCH[2]:-}" | tr 'A-Z' 'a-z')"
case "$unit" in
  t) size_nginx="$((num * 1024))g"; size_mb=$((num * 1024 * 1024)) ;;
  g) size_nginx="${num}g"; size_mb=$((num * 1024)) ;;
  m) size_nginx="${num}m"; size_mb=$num ;;
  k) size_nginx="${num}k"; size_mb=$((num / 1024)) ;;
  *) size_nginx="$num"; size_mb=$((num / 1048576)) ;;
esac
# One key per 4 MiB slice of a full cache; a key takes about 128 bytes of the zone (8000 per MiB).
keys_mb=$(( size_mb / 4 / 8000 + 2 ))

# Upstreams: same scheme, no path; the first names the Host header and TLS server name.
scheme="" servers="" first_host=""
for i in "${!upstreams[@]}"; do
  u="${upstreams[$i]%/}"
  [[ "$u" =~ ^(https?)://([^/]+)$ ]] || die "--upstream must be scheme://host[:port] without a path: '$u'"
  s="${BASH_REMATCH[1]}" hp="${BASH_REMATCH[2]}"
  [ -z "$scheme" ] || [ "$s" = "$scheme" ] || die "all --upstream URLs must use one scheme"
  scheme="$s"
  [ -n "$first_host" ] || first_host="$hp"
  port_given=1
  [[ "$hp" =~ :[0-9]+$ ]] || port_given=0
  if [ $port_given -eq 0 ]; then hp="$hp:$([ "$s" = https ] && echo 443 || echo 80)"; fi
  backup=""
  [ "$i" -eq 0 ] || backup=" backup"
  servers+="        server $hp max_fails=1 fail_timeout=10s$backup;"$'\n'
done
servers="${servers%$'\n'}"
sni_host="${first_host%:*}"
[[ "$first_host" =~ ^\[ ]] && sni_host="${first_host%]*}]"

# Known CDN origins: one upstream group each (keep-alive), chosen by the redirect's origin.
cdn_map="" cdn_upstreams=""
for i in "${!cdns[@]}"; do
  c="${cdns[$i]%/}"
  [[ "$c" =~ ^(https?)://([^/]+)$ ]] || die "--cdn must be scheme://host[:port] without a path: '$c'"
  cs="${BASH_REMATCH[1]}" chp="${BASH_REMATCH[2]}"
  [[ "$chp" =~ :[0-9]+$ ]] || chp="$chp:$([ "$cs" = https ] && echo 443 || echo 80)"
  cdn_map+="        \"$c\" $cs://mfs_cdn_$i;"$'\n'
  cdn_upstreams+="    upstream mfs_cdn_$i { server $chp; keepalive 32; keepalive_timeout 60s; }"$'\n'
done

ca=/etc/ssl/certs/ca-certificates.crt
tls_lines() {  # $1: name expression
  local l="proxy_ssl_server_name on; proxy_ssl_name $1;"
  if [ -r "$ca" ]; then l+=" proxy_ssl_verify on; proxy_ssl_verify_depth 4; proxy_ssl_trusted_certificate $ca;"; fi
  echo "$l"
}
upstream_tls=""
[ "$scheme" = https ] && upstream_tls="$(tls_lines "$sni_host")"
cdn_tls="$(tls_lines '$mfs_cdn_hostname')"

# The CDN host comes from the hub's redirect, so nginx resolves it at run time: use the system's
# first nameserver (IPv4 answers only unless the site has IPv6).
resolver_line=""
ns="$(awk '$1 == "nameserver" {print $2; exit}' /etc/resolv.conf 2>/dev/null || true)"
if [ -n "$ns" ]; then
  [[ "$ns" == *:* ]] && ns="[$ns]"
  resolver_line="resolver $ns valid=300s ipv6=off; resolver_timeout 10s;"
fi

nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"
[ -x "$nginx_bin" ] || die "nginx is not installed (apt-get install nginx-light)"

mkdir -p "$cache_dir"
cache_dir="$(cd "$cache_dir" && pwd)"
state="$cache_dir"
log_dir="${log_dir:-$cache_dir/logs}"
user_line=""
if [ "$(id -u)" -eq 0 ]; then
  if [ -z "$user" ]; then
    user=nobody
    id www-data >/dev/null 2>&1 && user=www-data
  fi
  user_line="user $user;"
fi

render() {
  local t
  t="$(cat "$here/nginx.conf.in")"
  t="${t//@UPSTREAM_SERVERS@/$servers}"
  t="${t//@UPSTREAM_HOST@/$first_host}"
  t="${t//@UPSTREAM_SCHEME@/$scheme}"
  t="${t//@UPSTREAM_TLS@/$upstream_tls}"
  t="${t//@CDN_TLS@/$cdn_tls}"
  t="${t//@CDN_MAP@/$cdn_map}"
  t="${t//@CDN_UPSTREAMS@/$cdn_upstreams}"
  t="${t//@RESOLVER_LINE@/$resolver_line}"
  t="${t//@USER_LINE@/$user_line}"
  t="${t//@LISTEN@/$listen}"
  t="${t//@STATE@/$state}"
  t="${t//@CACHE_DIR@/$cache_dir}"
  t="${t//@LOGDIR@/$log_dir}"
  t="${t//@CACHE_SIZE@/$size_nginx}"
  t="${t//@KEYS_MB@/$keys_mb}"
  t="${t//@INACTIVE@/$inactive}"
  t="${t//@RESOLVE_TTL@/$resolve_ttl}"
  t="${t//@BRANCH_TTL@/$branch_ttl}"
  t="${t//@PINNED_TTL@/$pinned_ttl}"
  t="${t//@BYTES_TTL@/$bytes_ttl}"
  printf '%s\n' "$t"
}

if [ $render_only -eq 1 ]; then
  render
  exit 0
fi

mkdir -p "$log_dir" "$cache_dir"/tmp/{body,proxy,fastcgi,uwsgi,scgi} "$cache_dir/bytes" "$cache_dir/meta"
render > "$state/nginx.conf.new"
mv "$state/nginx.conf.new" "$state/nginx.conf"
rm -f "$state/hub.sock"  # left by a killed instance; nginx will not bind over it
if [ -n "$user" ]; then
  chown -R "$user" "$cache_dir/bytes" "$cache_dir/meta" "$cache_dir/tmp" "$log_dir"
fi
"$nginx_bin" -t -q -p "$state" -c "$state/nginx.conf" -g "daemon $daemon;" || die "nginx rejected $state/nginx.conf"
echo "site-cache: ${upstreams[*]} -> $listen, cache $cache_dir ($size_nginx), logs $log_dir" >&2
if [ "$daemon" = on ]; then
  "$nginx_bin" -p "$state" -c "$state/nginx.conf" -g "daemon on;"
  echo "site-cache: running as a daemon, pid $(cat "$state/nginx.pid" 2>/dev/null || echo '?')" >&2
else
  exec "$nginx_bin" -p "$state" -c "$state/nginx.conf" -g "daemon off;"
fi
