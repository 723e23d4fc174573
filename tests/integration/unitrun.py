"""Runs a command the way a systemd unit file says, without systemd.

The machines the tests run on have no systemd as PID 1 (containers), so
test_install.py cannot start trainyard-server.service or
trainyard-agent.service. This module reads an installed unit file and gives
what systemd would run: the ExecStart argv (specifiers, Environment=,
EnvironmentFile= and $VAR/${VAR} expanded as systemd.service(5) says), the
environment, and a preexec function that applies the unit's sandbox with
the kernel features systemd itself uses:

  DynamicUser=yes            a uid of the dynamic range no passwd entry has,
                             no supplementary groups, HOME=/
  CapabilityBoundingSet=     the bounding set (what a root exec then gets)
  NoNewPrivileges=yes        PR_SET_NO_NEW_PRIVS
  UMask=, LimitNOFILE=       umask, setrlimit
  ProtectSystem=strict|full  a private mount namespace with / (strict) or
                             /usr /boot /efi /etc (full) read-only, and the
                             state directory, /dev and /proc writable
  ProtectHome=yes|read-only  empty inaccessible tmpfs over /home /root
                             /run/user, or those read-only
  PrivateTmp=yes             fresh tmpfs on /tmp and /var/tmp (the test's
                             own directory, which lives in /tmp, is carried
                             over so that the installed binary stays there)
  SystemCallFilter=@GROUP    a seccomp allow-list of the group as
                             `systemd-analyze syscall-filter` lists it;
                             anything else kills the process (stricter than
                             the unit's SystemCallErrorNumber=EPERM, so a
                             forbidden call cannot go unnoticed)
  MemoryDenyWriteExecute=yes seccomp: mmap W+X, mprotect/pkey_mprotect +X,
                             shmat SHM_EXEC fail with EPERM, as systemd does
  RestrictAddressFamilies=   seccomp: socket() of other families fails with
                             EAFNOSUPPORT, as systemd does

Anything else in the unit (PrivateDevices=, ProtectKernel*=, RestrictNamespaces=,
LockPersonality=, ...) is not applied here; systemd-analyze verify checks
it is a directive systemd knows.
"""

import ctypes
import ctypes.util
import errno
import os
import re
import resource
import shlex
import subprocess

SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DYNAMIC_UID = 61184 + 4242  # inside systemd's DynamicUser= range 61184-65519

# <linux/sched.h>, <linux/mount.h>, <linux/prctl.h>, <linux/capability.h>
CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_BIND, MS_REC, MS_PRIVATE = 0x1, 0x1000, 0x4000, 0x40000
AT_FDCWD, AT_RECURSIVE = -100, 0x8000
OPEN_TREE_CLONE, OPEN_TREE_CLOEXEC = 1, 0o2000000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_RDONLY = 0x1
SYS_OPEN_TREE, SYS_MOVE_MOUNT, SYS_MOUNT_SETATTR = 428, 429, 442  # x86-64 and arm64
PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 24, 38
CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
        "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
        "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
        "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
        "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
        "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
        "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
        "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND",
        "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"]
FAMILIES = {"AF_UNIX": 1, "AF_INET": 2, "AF_INET6": 10, "AF_NETLINK": 16, "AF_PACKET": 17}

# <seccomp.h>
SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_ALLOW = 0x7fff0000
SCMP_CMP_NE, SCMP_CMP_LT, SCMP_CMP_EQ, SCMP_CMP_GT, SCMP_CMP_MASKED_EQ = 1, 2, 4, 6, 7
PROT_WRITE, PROT_EXEC, SHM_EXEC = 0x2, 0x4, 0o100000


def SCMP_ACT_ERRNO(e):
    return 0x00050000 | (e & 0xffff)


class ScmpArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


class MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


# --------------------------------------------------------------------------
# unit files
# --------------------------------------------------------------------------

def parse_unit(path):
    """{section: [(key, value), ...]} in file order (keys may repeat)."""
    sections = {}
    current = None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("[") and line.endswith("]"):
                current = sections.setdefault(line[1:-1], [])
                continue
            assert current is not None and "=" in line, "%s: bad line %r" % (path, line)
            key, value = line.split("=", 1)
            current.append((key.strip(), value.strip()))
    return sections


def values(unit, key, section="Service"):
    return [v for k, v in unit.get(section, []) if k == key]


def value(unit, key, default=None, section="Service"):
    found = values(unit, key, section)
    return found[-1] if found else default


def parse_env_file(path):
    """KEY=VALUE lines as systemd's EnvironmentFile= reads them."""
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            key, val = line.split("=", 1)
            val = val.strip()
            env[key.strip()] = shlex.split(val)[0] if val[:1] in "\"'" else val
    return env


def expand_specifiers(word, specifiers):
    return re.sub(r"%(.)", lambda m: "%" if m.group(1) == "%" else specifiers[m.group(1)], word)


def environment(unit, specifiers, root=""):
    """The variables Environment= and EnvironmentFile= give (files read
    under root, the install's DESTDIR)."""
    env = {}
    for v in values(unit, "Environment"):
        for item in shlex.split(expand_specifiers(v, specifiers)):
            key, val = item.split("=", 1)
            env[key] = val
    for v in values(unit, "EnvironmentFile"):
        optional = v.startswith("-")
        path = root + expand_specifiers(v.lstrip("-"), specifiers)
        if optional and not os.path.exists(path):
            continue
        env.update(parse_env_file(path))
    return env


def exec_argv(unit, env, specifiers):
    """ExecStart= as systemd runs it: a word that is $NAME alone becomes the
    variable's whitespace-separated words, ${NAME} is replaced in place."""
    line = value(unit, "ExecStart")
    assert line and line[0] not in "-@:+!", "unexpected ExecStart prefix: %r" % line
    argv = []
    for word in shlex.split(line):
        word = expand_specifiers(word, specifiers)
        m = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
        if m:
            argv += env.get(m.group(1), "").split()
        else:
            argv.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}",
                               lambda m: env.get(m.group(1), ""), word))
    return argv


def yes(unit, key):
    return value(unit, key, "no") in ("yes", "true", "on", "1")


# --------------------------------------------------------------------------
# the sandbox
# --------------------------------------------------------------------------

def syscall_groups():
    """{"@group": [syscall or @group, ...]} from systemd-analyze."""
    out = subprocess.run(["systemd-analyze", "syscall-filter"], capture_output=True, text=True,
                         check=True).stdout
    groups = {}
    current = None
    for line in out.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.strip(), [])
        elif line.startswith("    ") and not line.strip().startswith("#") and current is not None:
            current.append(line.strip())
    return groups


def expand_group(name, groups, seen=None):
    seen = set() if seen is None else seen
    names = set()
    for item in groups[name]:
        if item.startswith("@"):
            if item not in seen:
                seen.add(item)
                names |= expand_group(item, groups, seen)
        else:
            names.add(item)
    return names


def _check(rc, what):
    if rc < 0:
        e = ctypes.get_errno()
        raise OSError(e, "%s: %s" % (what, os.strerror(e)))


class Sandbox:
    """The unit's sandbox, prepared in the parent (anything that allocates
    or runs programs) and applied in the child by preexec()."""

    def __init__(self, unit, state_dir, carry_dir):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.unit = unit
        self.state_dir = state_dir
        self.carry_dir = carry_dir  # the test's directory: kept visible under PrivateTmp=
        self.uid = DYNAMIC_UID if yes(unit, "DynamicUser") else 0
        bset = value(unit, "CapabilityBoundingSet")
        self.keep_caps = None if bset is None else set(bset.split())
        assert self.keep_caps is None or self.keep_caps <= set(CAPS), self.keep_caps
        self.last_cap = int(open("/proc/sys/kernel/cap_last_cap").read())
        self.umask = int(value(unit, "UMask", "0022"), 8)
        nofile = value(unit, "LimitNOFILE")
        self.nofile = int(nofile) if nofile else None
        self.protect_system = value(unit, "ProtectSystem", "no")
        self.protect_home = value(unit, "ProtectHome", "no")
        self.private_tmp = yes(unit, "PrivateTmp")
        self.filters = []
        self._prepare_seccomp()

    # -- seccomp -----------------------------------------------------------
    def _prepare_seccomp(self):
        allow = values(self.unit, "SystemCallFilter")
        mdwe = yes(self.unit, "MemoryDenyWriteExecute")
        families = value(self.unit, "RestrictAddressFamilies")
        if not (allow or mdwe or families):
            return
        lib = ctypes.CDLL(ctypes.util.find_library("seccomp") or "libseccomp.so.2")
        lib.seccomp_init.restype = ctypes.c_void_p
        lib.seccomp_init.argtypes = [ctypes.c_uint32]
        lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                               ctypes.c_uint, ctypes.POINTER(ScmpArgCmp)]
        lib.seccomp_load.argtypes = [ctypes.c_void_p]
        self.seccomp = lib

        def rule(ctx, action, name, *cmps):
            nr = lib.seccomp_syscall_resolve_name(name.encode())
            if nr < 0:
                return  # not on this architecture
            arr = (ScmpArgCmp * max(len(cmps), 1))(*[ScmpArgCmp(*c) for c in cmps])
            rc = lib.seccomp_rule_add_array(ctx, action, nr, len(cmps), arr)
            assert rc == 0, "seccomp rule for %s: %d" % (name, rc)

        # self.filters is loaded last to first: the allow-list goes first.
        if allow:
            groups = syscall_groups()
            names = set()
            for v in allow:
                assert not v.startswith("~"), "deny-lists are not emulated: %r" % v
                for item in v.split():
                    names |= expand_group(item, groups) if item.startswith("@") else {item}
            ctx = lib.seccomp_init(SCMP_ACT_KILL_PROCESS)
            for name in sorted(names):
                rule(ctx, SCMP_ACT_ALLOW, name)
            self.filters.append(ctx)
        if mdwe or families:
            ctx = lib.seccomp_init(SCMP_ACT_ALLOW)
            if mdwe:
                eperm = SCMP_ACT_ERRNO(errno.EPERM)
                wx = PROT_WRITE | PROT_EXEC
                rule(ctx, eperm, "mmap", (2, SCMP_CMP_MASKED_EQ, wx, wx))
                rule(ctx, eperm, "mprotect", (2, SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC))
                rule(ctx, eperm, "pkey_mprotect", (2, SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC))
                rule(ctx, eperm, "shmat", (2, SCMP_CMP_MASKED_EQ, SHM_EXEC, SHM_EXEC))
            if families:
                ok = sorted(FAMILIES[f] for f in families.split())
                nosupport = SCMP_ACT_ERRNO(errno.EAFNOSUPPORT)
                rule(ctx, nosupport, "socket", (0, SCMP_CMP_LT, ok[0], 0))
                rule(ctx, nosupport, "socket", (0, SCMP_CMP_GT, ok[-1], 0))
                for fam in range(ok[0] + 1, ok[-1]):
                    if fam not in ok:
                        rule(ctx, nosupport, "socket", (0, SCMP_CMP_EQ, fam, 0))
            self.filters.append(ctx)

    # -- mounts --------------------------------------------------------------
    def _mount(self, src, target, fstype, flags, data=None):
        _check(self.libc.mount(src and src.encode(), target.encode(),
                               fstype and fstype.encode(), ctypes.c_ulong(flags),
                               data and data.encode()), "mount %s" % target)

    def _setattr(self, path, rdonly, recursive):
        attr = MountAttr(MOUNT_ATTR_RDONLY if rdonly else 0, 0 if rdonly else MOUNT_ATTR_RDONLY,
                         0, 0)
        _check(self.libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, path.encode(),
                                 AT_RECURSIVE if recursive else 0, ctypes.byref(attr),
                                 ctypes.sizeof(attr)), "mount_setattr %s" % path)

    def _mounts(self):
        _check(self.libc.unshare(CLONE_NEWNS), "unshare")
        self._mount(None, "/", None, MS_REC | MS_PRIVATE)
        self._mount(self.state_dir, self.state_dir, None, MS_BIND)
        homes = [d for d in ("/home", "/root", "/run/user") if os.path.isdir(d)]
        if self.private_tmp:
            fd = self.libc.syscall(SYS_OPEN_TREE, AT_FDCWD, self.carry_dir.encode(),
                                   OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE)
            _check(fd, "open_tree %s" % self.carry_dir)
            for d in ("/tmp", "/var/tmp"):
                self._mount("tmpfs", d, "tmpfs", 0, "mode=1777")
            os.makedirs(self.carry_dir)
            _check(self.libc.syscall(SYS_MOVE_MOUNT, fd, b"", AT_FDCWD, self.carry_dir.encode(),
                                     MOVE_MOUNT_F_EMPTY_PATH), "move_mount %s" % self.carry_dir)
        if self.protect_home == "yes":
            for d in homes:
                self._mount("tmpfs", d, "tmpfs", MS_RDONLY, "mode=000")
        elif self.protect_home == "read-only":
            for d in homes:
                self._mount(d, d, None, MS_BIND | MS_REC)
                self._setattr(d, True, True)
        if self.protect_system == "strict":
            self._setattr("/", True, True)
            self._setattr("/dev", False, True)
            self._setattr("/proc", False, False)
            self._setattr(self.state_dir, False, False)
            if self.private_tmp:
                self._setattr("/tmp", False, False)
                self._setattr("/var/tmp", False, False)
        elif self.protect_system in ("full", "yes"):
            ro = ["/usr", "/boot", "/efi"] + (["/etc"] if self.protect_system == "full" else [])
            for d in ro:
                if os.path.isdir(d):
                    self._mount(d, d, None, MS_BIND | MS_REC)
                    self._setattr(d, True, True)
        else:
            assert self.protect_system == "no", self.protect_system

    def preexec(self):
        """In the child, before exec: everything above, in the order systemd
        applies it (mounts and capabilities as root, then the user, then
        no_new_privs and the seccomp filters)."""
        if self.nofile:
            # As far as this machine lets (a container may cap the hard
            # limit and withhold CAP_SYS_RESOURCE, which systemd has).
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            n = self.nofile if hard == resource.RLIM_INFINITY else min(self.nofile, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
        if self.protect_system != "no" or self.protect_home != "no" or self.private_tmp:
            self._mounts()
        if self.keep_caps is not None:
            for cap in range(self.last_cap + 1):
                name = CAPS[cap] if cap < len(CAPS) else None
                if name not in self.keep_caps:
                    _check(self.libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), "PR_CAPBSET_DROP")
        os.umask(self.umask)
        if self.uid:
            os.setgroups([])
            os.setresgid(self.uid, self.uid, self.uid)
            os.setresuid(self.uid, self.uid, self.uid)
        if yes(self.unit, "NoNewPrivileges") or self.filters:
            _check(self.libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "PR_SET_NO_NEW_PRIVS")
        # The allow-list last: seccomp() itself is not on it.
        for ctx in reversed(self.filters):
            rc = self.seccomp.seccomp_load(ctx)
            if rc != 0:
                raise OSError(-rc, "seccomp_load")


def service_env(unit, state_dir, creds_dir=None):
    """The variables systemd sets for the service itself (systemd.exec(5),
    "Environment Variables in Spawned Processes")."""
    env = {"PATH": SYSTEMD_PATH, "LANG": "C.UTF-8"}
    if yes(unit, "DynamicUser"):
        env.update(USER="trainyard", LOGNAME="trainyard", HOME="/", SHELL="/usr/sbin/nologin")
    if value(unit, "StateDirectory"):
        env["STATE_DIRECTORY"] = state_dir
    if creds_dir and values(unit, "LoadCredential"):
        env["CREDENTIALS_DIRECTORY"] = creds_dir
    return env


def proc_status(pid):
    """/proc/PID/status as a dict."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, val = line.partition(":")
            out[key] = val.strip()
    return out


def cap_mask(names):
    return sum(1 << CAPS.index(n) for n in names)
