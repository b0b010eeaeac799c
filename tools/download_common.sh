# Shared by tools/download_models.sh and tools/download_squad.sh (sourced, not
# run): resumable, size-checked downloads with curl, and a clear message when
# the network is unreachable.
#
# Functions called in `cmd || ...` lists run without errexit, so every step
# here checks its own failures.

# Every request retries transient failures and gives up connecting after a
# while, so a dead network fails in seconds rather than hanging.
LP_CURL_OPTS=(--retry 3 --retry-delay 1 --connect-timeout 15)
# Printed after the offline message; set by the calling script.
LP_OFFLINE_HINT=""

lp_die() {
  echo "error: $*" >&2
  exit 1
}

lp_usage_error() {
  echo "error: $* (see --help)" >&2
  exit 2
}

lp_file_size() { wc -c <"$1" | tr -d ' '; }

# Explains a failed curl (exit status $1, URL $2) and exits.
lp_curl_failed() {
  local rc=$1 url=$2 host
  host=${url#*://}
  host=${host%%/*}
  case $rc in
    6 | 7 | 28) lp_die "cannot reach $host: are you offline? (curl exit $rc for $url)${LP_OFFLINE_HINT:+
$LP_OFFLINE_HINT}" ;;
    127) lp_die "curl is not installed: install it (Debian: apt-get install curl, or tools/install_deps.sh) and run again" ;;
    *) lp_die "downloading $url failed (curl exit $rc); run again to resume" ;;
  esac
}

# HEAD request for $1. Sets LP_STATUS (the first response's HTTP status: the
# hub answers 404/401 itself, then may redirect to a CDN), LP_FOUND (yes, no,
# or error) and LP_SIZE (the announced size in bytes, or "" when unknown: the
# hub's x-linked-size for large files, else the final Content-Length).
lp_head() {
  local url=$1 headers rc=0 line status="" linked="" length="" final=""
  headers=$(curl -sS -I -L "${LP_CURL_OPTS[@]}" "$url" 2>/dev/null) || rc=$?
  ((rc == 0)) || lp_curl_failed "$rc" "$url"
  while IFS= read -r line; do
    line=${line%$'\r'}
    case ${line,,} in
      http/*)
        final=$(awk '{print $2}' <<<"$line")
        [[ -n $status ]] || status=$final
        length=""
        ;;
      x-linked-size:*) linked=$(tr -d ' ' <<<"${line#*:}") ;;
      content-length:*) length=$(tr -d ' ' <<<"${line#*:}") ;;
    esac
  done <<<"$headers"
  LP_STATUS=$status
  case $status in
    2?? | 3??) LP_FOUND=yes ;;
    404 | 401) LP_FOUND=no ;;
    *) LP_FOUND=error ;;
  esac
  LP_SIZE=$linked
  [[ -n $LP_SIZE || $final != 200 ]] || LP_SIZE=$length
}

# GET $1 into $2, continuing from the bytes already there.
lp_get() {
  local progress=(-sS)
  [[ -t 2 ]] && progress=(--progress-bar)
  curl -fL "${LP_CURL_OPTS[@]}" "${progress[@]}" -C - -o "$2" "$1"
}

# Downloads URL $1 to DEST $2 through "$2.part" (resumed if an earlier run
# left one), checks the size against the server's, then renames it into
# place. A complete DEST is kept. Returns 4 when the server says the file does
# not exist; exits on any other failure.
lp_fetch() {
  local url=$1 dest=$2 part="$2.part" rc=0 got
  lp_head "$url"
  case $LP_FOUND in
    no) return 4 ;;
    error) lp_die "$url: the server answered HTTP $LP_STATUS" ;;
  esac
  if [[ -f $dest ]]; then
    got=$(lp_file_size "$dest")
    if [[ -z $LP_SIZE || $got == "$LP_SIZE" ]]; then
      echo "  $dest: already complete"
      return 0
    fi
    echo "  $dest has $got bytes, the server $LP_SIZE: downloading it again"
    rm -f "$dest" || lp_die "cannot remove $dest"
  fi
  if [[ -f $part && -n $LP_SIZE ]] && (($(lp_file_size "$part") > LP_SIZE)); then
    rm -f "$part" || lp_die "cannot remove $part"
  fi
  if [[ ! -f $part || -z $LP_SIZE || $(lp_file_size "$part") != "$LP_SIZE" ]]; then
    [[ -s $part ]] && echo "  resuming $dest from byte $(lp_file_size "$part")"
    [[ -s $part ]] || echo "  downloading $url"
    lp_get "$url" "$part" || rc=$?
    if ((rc == 33)); then
      echo "  the server cannot resume; downloading $dest from the start"
      rm -f "$part" || lp_die "cannot remove $part"
      rc=0
      lp_get "$url" "$part" || rc=$?
    fi
    # A failed download keeps its .part, so the next run resumes it.
    ((rc == 0)) || lp_curl_failed "$rc" "$url"
  fi
  got=$(lp_file_size "$part")
  if ((got == 0)); then
    rm -f "$part"
    lp_die "$url: the server sent an empty file"
  fi
  if [[ -n $LP_SIZE && $got != "$LP_SIZE" ]]; then
    lp_die "$part has $got bytes, but the server announced $LP_SIZE; run again to resume, or delete it to start over"
  fi
  mv -f "$part" "$dest" || lp_die "cannot rename $part to $dest"
  echo "  $dest: $got bytes"
}
