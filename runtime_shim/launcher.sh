#!/bin/sh
# gpu-container-runtime: the command engines call for every container operation.
#
# Only create and run rewrite config.json, and delete of a container holding MIG leases releases
# them; those start Python. Every other call (state, kill, delete, start, exec probes ...) execs
# the low-level runtime from here, without paying for an interpreter, when the fast-path entry
# the Python side wrote (runtime_shim/fastpath.py) still matches the configuration byte for
# byte. Anything unusual goes to Python, which is always right: this script may only do what the
# Python shim would do, never decide differently (tests/runtime_shim/test_launcher.py runs both
# on the same argv). A new command the Python shim treats specially must be added here too.
#
# runtime_shim.launcher.render_runtime sets PYTHON, PYCODE and STATE at install time.
PYTHON=/usr/bin/python3
PYCODE='import site,sys;site.main();from runtime_shim.main import main;sys.exit(main())'
STATE=/run/gpu-container-shim/fastpath
TRIGGERS='nvidia_visible_devices|nvidia-container-devices|cuda_version|ai.scheduling.policy|ai_scheduling_policy|oomscoreadj|nvidia|libcuda|cdi.k8s.io|\u|ſ|K'
CMP='/usr/bin/cmp /bin/cmp'
FIND='/usr/bin/find /bin/find'

# Whatever PATH this shell searches is the one both paths use (dash and bash give an unset PATH
# a default value without exporting it; Python would otherwise search a different one).
export PATH

slow() {
    exec "$PYTHON" -I -S -c "$PYCODE" "$@"
}

# Find the command as runtime_shim/argv.py does, with Go's flag rules (-name and --name alike,
# a value as =value or the next word, whatever it is). Anything argv.py would find refused or
# that this scan is not sure of (an unknown flag, bad syntax, a boolean with a value, help)
# sets command=? and goes to Python. "--" makes the next word the command. $n counts the words
# up to and including the command.
command=
scan=flag
n=0
for arg do
    n=$((n + 1))
    case $scan in
        value) scan=flag; continue ;;
        command) command=$arg; break ;;
    esac
    case $arg in
        --) scan=command; continue ;;
        -) command=$arg; break ;;
        --*) name=${arg#--} ;;
        -*) name=${arg#-} ;;
        *) command=$arg; break ;;
    esac
    case $name in
        *=*) name=${name%%=*}; eq=1 ;;
        *) eq= ;;
    esac
    case $name in
        root|log|log-format|criu|rootless) [ -n "$eq" ] || scan=value ;;
        debug|systemd-cgroup)
            case $eq:${arg#*=} in
                :*|1:1|1:t|1:T|1:TRUE|1:true|1:True|1:0|1:f|1:F|1:FALSE|1:false|1:False) ;;
                *) command=?; break ;;
            esac ;;
        *) command=?; break ;;
    esac
done

# A boolean command flag: bare (prev=bool, an id right after it ends the flags for Go), or with
# one of the values Go's ParseBool accepts.
go_bool() {
    if [ -z "$eq" ]; then prev=bool; return 0; fi
    case $value in
        1|t|T|TRUE|true|True|0|f|F|FALSE|false|False) prev=value ;;
        *) return 1 ;;
    esac
}

# The bundle and the container id of a create, run or delete, as argv.py finds them, but only
# for argv where urfave/cli's reordering cannot change the reading: known flags, the id
# before them or alone after "--", each value flag followed by a word not starting with "-",
# one flag name per flag, exactly one id, and after an id that follows a bare boolean nothing
# else. Returns 1 (Python decides) for anything else. $1 is the command's flag table.
operands() {
    table=$1
    shift
    skip=$n
    cid=
    have=
    bundle=
    want=
    prev=
    as_b=
    as_d=
    as_f=
    for arg do
        if [ "$skip" -gt 0 ]; then skip=$((skip - 1)); continue; fi
        [ "$prev" != last ] || return 1
        if [ "$prev" = rest ]; then  # after "--": exactly one word, the id
            [ -z "$have" ] || return 1
            cid=$arg
            have=1
            continue
        fi
        if [ -n "$want" ]; then
            case $arg in -*) return 1 ;; esac
            [ "$want" = bundle ] && bundle=$arg
            want=
            prev=value
            continue
        fi
        case $arg in
            -) return 1 ;;
            --) [ -z "$have" ] || return 1; prev=rest; continue ;;
            --*) name=${arg#--} ;;
            -*) name=${arg#-} ;;
            *)
                [ -z "$have" ] || return 1
                cid=$arg
                have=1
                if [ "$prev" = bool ]; then prev=last; else prev=id; fi
                continue ;;
        esac
        case $name in
            *=*) value=${name#*=}; name=${name%%=*}; eq=1 ;;
            *) eq= ;;
        esac
        case $table:$name in
            run:bundle|run:b|create:bundle|create:b)
                [ -z "$as_b" ] || [ "$as_b" = "$name" ] || return 1
                as_b=$name
                if [ -n "$eq" ]; then bundle=$value; prev=value; else want=bundle; fi ;;
            run:console-socket|run:pid-file|create:console-socket|create:pid-file)
                if [ -n "$eq" ]; then prev=value; else want=value; fi ;;
            run:detach|run:d)
                [ -z "$as_d" ] || [ "$as_d" = "$name" ] || return 1
                as_d=$name
                go_bool || return 1 ;;
            delete:force|delete:f)
                [ -z "$as_f" ] || [ "$as_f" = "$name" ] || return 1
                as_f=$name
                go_bool || return 1 ;;
            run:keep|run:no-subreaper|run:no-pivot|run:no-new-keyring|create:no-pivot|\
            create:no-new-keyring)
                go_bool || return 1 ;;
            *) return 1 ;;
        esac
    done
    [ -z "$want" ] && [ -n "$have" ]
}

# trusted PATH PARENT: whether PATH is as gpu_core/private_dirs.py and gpu_core/logfile.py trust it
# (not a symlink, owned by root, writable by nobody else, a file with one link) and PARENT
# cannot be swapped by others (owned by root, not writable by others unless sticky). Needs
# find(1) (POSIX -prune keeps it at the named paths); without one, nothing is trusted.
trusted() {
    case $2 in *[][*?\\]*) return 1 ;; esac  # PARENT is also a -path pattern
    for tool in $FIND; do
        if [ -x "$tool" ]; then
            loose=$("$tool" "$1" "$2" -prune \( -type l -o ! -user 0 -o -type f -links +1 -o \
                -perm -002 ! -perm -1000 -o ! -path "$2" \( -perm -020 -o -perm -002 \) \) \
                -print 2>/dev/null) || return 1
            [ -z "$loose" ]
            return
        fi
    done
    return 1
}

# The runtimes list of the configuration in force, or failure. An entry is a few lines:
# magic, the config path it was made for, "absent" (the default file does not exist, so the
# defaults apply) or "copy NAME" (the exact bytes that were validated), "lease-dir DIR" (MIG
# leases, empty when off), the runtimes, "end".
runtimes() {
    if [ -n "${GPU_CONTAINER_SHIM_CONFIG:-}" ]; then slot=named; else slot=default; fi
    entry=$STATE/$slot
    [ -f "$entry" ] && [ ! -L "$entry" ] && [ -O "$entry" ] || return 1
    # A directory someone else made or can write is not ours. Python seals the directory it
    # checked, and its parent, with the sticky bit (fastpath.seal), which any numeric chmod
    # clears: a sealed directory of ours needs no process here; the parent, when unsealed, is
    # checked with find; the state directory, when unsealed, goes to Python.
    [ -d "$STATE" ] && [ ! -L "$STATE" ] && [ -O "$STATE" ] && [ -k "$STATE" ] || return 1
    parent=${STATE%/*}
    [ -k "${parent:-/}" ] && [ ! -L "${parent:-/}" ] && [ -O "${parent:-/}" ] ||
        trusted "$STATE" "${parent:-/}" || return 1
    list=
    complete=
    {
        IFS= read -r magic && IFS= read -r path && IFS= read -r how &&
            IFS= read -r leases && IFS= read -r create && IFS= read -r log || return 1
        while IFS= read -r name; do
            if [ "$name" = end ]; then complete=1; break; fi
            list=$list$name$nl
        done
    } 2>/dev/null <"$entry" || return 1
    [ "$magic" = "gpu-container-shim fastpath 3" ] && [ -n "$complete" ] || return 1
    case $leases in
        "lease-dir "*) lease_dir=${leases#lease-dir } ;;
        *) return 1 ;;
    esac
    case $create in
        "create-fast "*) create_fast=${create#create-fast } ;;
        *) return 1 ;;
    esac
    case $log in
        "log "*) log_file=${log#log } ;;
        *) return 1 ;;
    esac
    case $slot:$how in
        default:absent)
            # open() would fail with ENOENT: no file and no symlink, and a parent that is a
            # directory or itself absent under a directory.
            parent=${path%/*}
            [ ! -e "$path" ] && [ ! -L "$path" ] || return 1
            [ -d "$parent" ] || { [ ! -e "$parent" ] && [ ! -L "$parent" ] &&
                                  [ -d "${parent%/*}/" ]; } || return 1
            ;;
        *:"copy copy-"*)
            copy=${how#copy }
            case $copy in */*) return 1 ;; esac
            config=${GPU_CONTAINER_SHIM_CONFIG:-$path}
            [ -f "$config" ] || return 1
            same=
            for tool in $CMP; do
                if [ -x "$tool" ]; then
                    "$tool" -s -- "$config" "$STATE/$copy" </dev/null >/dev/null 2>&1 && same=1
                    break
                fi
            done
            [ -n "$same" ] || return 1
            ;;
        *) return 1 ;;
    esac
}

# The first runtime found as an absolute path or on PATH, as runtime_shim/lowlevel.py finds it.
find_runtime() {
    set -f
    IFS=$nl
    for name in $list; do
        case $name in
            /*) if [ -f "$name" ] && [ -x "$name" ]; then found=$name; return 0; fi
                continue ;;
            */*) continue ;;
        esac
        IFS=:
        for dir in $PATH; do
            [ -n "$dir" ] || continue
            case $dir in
                */) candidate=$dir$name ;;
                *) candidate=$dir/$name ;;
            esac
            if [ -f "$candidate" ] && [ -x "$candidate" ]; then found=$candidate; return 0; fi
        done
        IFS=$nl
    done
    return 1
}

# delete of a container holding MIG leases: Python runs the runtime, then releases them.
holds_leases() {
    [ "$command" = delete ] && [ -n "$lease_dir" ] || return 1
    operands delete "$@" || return 0  # not sure which id: Python decides
    case $cid in
        ''|*/*|.|..) return 1 ;;
    esac
    [ -e "$lease_dir/$cid.json" ]
}

# create/run of a container that no modifier would touch: config.json names none of the
# TRIGGERS (matched byte-wise without regard to ASCII case, as Go's JSON decoder matches keys; a
# \u escape, a long s or a Kelvin sign could spell one, so they are triggers too) and the
# configuration changes no such container (the entry's create-fast line: no cgroup.parent). The
# image's /dev must not be a symlink (runtime_shim/rootfs_guard.py), so root.path must be
# readable without a JSON parser exactly as runc reads it: one "root" key in any case, spelled so
# and holding only "path" (a value without escapes or ".." components) and maybe "readonly".
# Anything else, and any failure, goes to Python. Sets $stamp, $bundle_dir and $rootfs (names no other function uses:
# sh has no local variables).
untouched_create() {
    [ "$create_fast" = yes ] || return 1
    operands "$command" "$@" || return 1
    bundle_dir=${bundle:-$PWD}
    case $bundle_dir in
        /*) ;;
        *) bundle_dir=$PWD/$bundle_dir ;;
    esac
    spec=$bundle_dir/config.json
    [ -f "$spec" ] && [ ! -L "$spec" ] || return 1
    # Our log line would need quoting (gpu_core/logfile.py BARE), or escaping: Python writes it.
    # Letters spelled out: a range would follow the locale's collation.
    case $cid$bundle_dir in
        *[!ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_./:@+,-]*) return 1 ;;
    esac
    # The log file is appended to only when it is a file of ours that nobody else can swap for
    # a symlink (gpu_core/logfile.open_log); else Python writes the line (moving it aside).
    if [ -n "$log_file" ]; then
        case $log_file in /*/*) ;; *) return 1 ;; esac
        [ -f "$log_file" ] && [ ! -L "$log_file" ] && [ -O "$log_file" ] &&
            trusted "$log_file" "${log_file%/*}" || return 1
    fi
    # ENVIRON, not -v: awk would read the backslash of \u in a -v value as an escape.
    found_root=$(LC_ALL=C TRIGGERS=$TRIGGERS awk '
        BEGIN { n = split(ENVIRON["TRIGGERS"], t, "|") }
        {
            low = tolower($0)
            for (i = 1; i <= n; i++) if (index(low, t[i])) { hit = 1; exit 3 }
            text = text $0 " "
        }
        END {
            if (hit) exit 3  # exit in a rule still runs END
            low = tolower(text)
            count = 0
            rest = low
            while (match(rest, /"root"[ \t\r]*:/)) { count++; rest = substr(rest, RSTART + RLENGTH) }
            if (count != 1) exit 3
            # root must be exactly {"path": "..."} or {"path": "...", "readonly": bool}
            # in this spelling: a repeated or differently spelled key is for Python to merge.
            if (!match(text, /"root"[ \t\r]*:[ \t\r]*[{][ \t\r]*"path"[ \t\r]*:[ \t\r]*"[^"\\]*"[ \t\r]*([}]|,[ \t\r]*"readonly"[ \t\r]*:[ \t\r]*(true|false)[ \t\r]*[}])/)) exit 3
            text = substr(text, RSTART)
            if (!match(text, /"root"[ \t\r]*:[ \t\r]*[{][ \t\r]*"path"[ \t\r]*:[ \t\r]*"[^"\\]*"/)) exit 3
            value = substr(text, RSTART, RLENGTH - 1)
            sub(/.*"/, "", value)
            if (value == "") exit 3
            print strftime("%Y-%m-%dT%H:%M:%SZ", systime(), 1)
            print value
        }' "$spec" 2>/dev/null) || return 1
    stamp=${found_root%%"$nl"*}
    rootfs=${found_root#*"$nl"}
    case $rootfs in
        ..|../*|*/..|*/../*) return 1 ;;  # runc cleans ".." as text, the kernel would not
    esac
    case $rootfs in
        /*) ;;
        *) rootfs=$bundle_dir/$rootfs ;;
    esac
    [ ! -L "$rootfs/dev" ]
}

nl='
'
case $command in
    create|run)
        if runtimes && untouched_create "$@" && find_runtime; then
            if [ -n "$log_file" ]; then
                printf 'time=%s level=info cmd=%s id=%s bundle=%s gpu=no written=no changes=none path=fast\n' \
                    "$stamp" "$command" "$cid" "$bundle_dir" >>"$log_file" 2>/dev/null || :
            fi
            exec "$found" "$@"
        fi
        slow "$@" ;;
    help) slow "$@" ;;  # Python prints our help before the runtime's
    "?") slow "$@" ;;  # not sure what runc reads (--version and --help among it): Python decides
esac
if runtimes && ! holds_leases "$@" && find_runtime; then
    exec "$found" "$@"
fi
slow "$@"
