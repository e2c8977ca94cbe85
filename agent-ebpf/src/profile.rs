//! Syscall profiles: seccomp-like verdicts decided at syscall entry, in the kernel.
//!
//! Runs first in `raw_syscalls:sys_enter` (raw tracepoint, `TP_PROTO(struct pt_regs *regs,
//! long id)`, Linux 4.17+) for every syscall. A task whose cgroup has no `PROFILE_SCOPE` entry
//! costs one hash lookup. For one in scope: one array lookup gives the verdict of its profile
//! for this syscall; argument rules (a second lookup and register reads) only for syscalls that
//! have them. `allow` returns there. `log` and `alert` emit a `ProfileEvent`; `kill` first calls
//! `bpf_send_signal(SIGKILL)`, which queues the signal on the current task: it dies when the
//! syscall returns to user space, before it runs another instruction of its own. The syscall
//! itself still runs (a tracepoint cannot fail it; `bpf_override_return` and LSM hooks are not
//! available here), so a kill is too late for the syscall's own effect, and in time for
//! everything the process would do with its result.

use agent_common::{
    ArgRules, COMPAT_IPC, COMPAT_PROFILE_ONLY, COMPAT_SOCKETCALL, EventKind, MAX_ARG_CONDS,
    MAX_ARG_RULES, MAX_PROFILE_SLOTS, MAX_SYSCALL_NR, NO_SLOT, ProfileEvent, action, arg_op,
    args_key, counter, ipc, scope_flags, socketcall, taken, verdict, verdict_index,
};
use aya_ebpf::{
    helpers::{bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, generated::bpf_send_signal},
    programs::RawTracePointContext,
};

use crate::{
    maps::{
        COMPAT_NR, PROFILE_ARGS, PROFILE_RECORD, PROFILE_SCOPE, PROFILE_VERDICTS, config, count,
    },
    output::emit,
    task::{Access, Probed, fill_header, read_args, socketcall_args, with_pid_view},
};

const SIGKILL: u32 = 9;

/// Judges the current syscall `nr` by the profile of the current task's cgroup, if any.
#[inline(always)]
pub fn check(ctx: &RawTracePointContext, nr: u64) {
    let regs: u64 = ctx.arg(0);
    // SAFETY: helper without arguments.
    let cgroup = unsafe { bpf_get_current_cgroup_id() };
    let Some(scope) = (unsafe { PROFILE_SCOPE.get(&cgroup) }) else {
        return;
    };
    let scope = (cgroup, scope.slot, scope.flags);
    let cfg = config();
    if Probed::compat(cfg) {
        // A call through the 32-bit entry is judged as the 64-bit call it is (judged by its
        // own number, `int $0x80` was a way around every profile: ia32 `open` is 5, which an
        // allow list naming `fstat` let through). One no 64-bit call stands for falls in the
        // row's last entry, with the numbers no profile names; one whose arguments are laid
        // out otherwise meets the strictest of its argument rules, as a request whose
        // arguments are not read does.
        let args = Probed::compat_args(regs, cfg);
        let (nr, args, known) = match COMPAT_NR.get(nr as u32 & (MAX_SYSCALL_NR - 1)).copied() {
            _ if nr >= MAX_SYSCALL_NR as u64 => (nr, args, true),
            Some(COMPAT_SOCKETCALL) => match socketcall(args[0]) {
                Some((to, words)) => (
                    to as u64,
                    socketcall_args(args[1], words).unwrap_or([0; 6]),
                    true,
                ),
                None => (MAX_SYSCALL_NR as u64, args, true),
            },
            // System V IPC through one number: `shmget` made so was a call no profile names.
            Some(COMPAT_IPC) => match ipc(args) {
                Some((to, args, known)) => (to as u64, args, known),
                None => (MAX_SYSCALL_NR as u64, args, true),
            },
            Some(to) if to != 0 => (
                (to & !COMPAT_PROFILE_ONLY) as u64 - 1,
                args,
                to & COMPAT_PROFILE_ONLY == 0,
            ),
            _ => (MAX_SYSCALL_NR as u64, args, true),
        };
        judge_in(scope, nr, || args, known, 0);
    } else {
        judge_in(scope, nr, || read_args(regs, cfg), true, 0);
    }
}

/// Judges an io_uring request as the syscall `nr` it stands for, with the syscall's
/// arguments `args` taken from the request, when it is submitted. Without this a ring is a way
/// around every profile: `IORING_OP_CONNECT` connects without a connect(2) for `sys_enter` to
/// see. The task is the submitter (or the ring's kernel-side submission thread, one of the
/// process's threads): a kill ends the process, and cancels what its ring has not done yet.
/// `known` is false for an opcode whose arguments are not read (one the sensor does not
/// report: `IORING_OP_MKDIRAT`, `READ`...): where the syscall has argument rules it meets the
/// strictest of them, since the request could be any call they tell apart.
#[inline(always)]
pub fn check_ring_request(nr: u64, args: &[u64; 6], known: bool) {
    // SAFETY: reads six integers through a valid reference; volatile so that the values are
    // loaded from where the caller stored them, not carried over in registers.
    judge(
        nr,
        || unsafe { core::ptr::read_volatile(args) },
        known,
        taken::IO_URING,
    );
}

/// The profile's verdict on syscall `nr` with arguments `args()` (read only when an argument
/// rule or a record needs them; not known when `known` is false); `via` is added to the
/// record's `taken` bits.
#[inline(always)]
fn judge<F: Fn() -> [u64; 6]>(nr: u64, args: F, known: bool, via: u32) {
    // SAFETY: helper without arguments.
    let cgroup = unsafe { bpf_get_current_cgroup_id() };
    let Some(scope) = (unsafe { PROFILE_SCOPE.get(&cgroup) }) else {
        return;
    };
    judge_in((cgroup, scope.slot, scope.flags), nr, args, known, via);
}

/// [`judge`] for a task in scope: `(cgroup, slot, flags)` of its `PROFILE_SCOPE` entry.
#[inline(always)]
fn judge_in<F: Fn() -> [u64; 6]>(
    (cgroup, slot, flags): (u64, u32, u32),
    nr: u64,
    args: F,
    known: bool,
    via: u32,
) {
    if flags & scope_flags::RECORD != 0 && nr < MAX_SYSCALL_NR as u64 {
        record(cgroup, nr as u32);
    }
    if slot == NO_SLOT || slot >= MAX_PROFILE_SLOTS {
        return;
    }
    let Some(v) = PROFILE_VERDICTS.get(verdict_index(slot, nr)) else {
        return;
    };
    let v = *v;
    let cfg = config();
    // The agent never judges itself: a host profile must not kill the thing enforcing it.
    let pid_tgid = bpf_get_current_pid_tgid();
    if cfg.ready == 0 || (pid_tgid >> 32) as u32 == cfg.agent_tgid {
        return;
    }
    let mut act = v & verdict::ACTION_MASK;
    if v & verdict::HAS_ARGS != 0
        && let Some(rules) = unsafe { PROFILE_ARGS.get(&args_key(slot, nr as u32)) }
    {
        if known {
            if let Some(a) = match_rules(rules, &args()) {
                act = a;
            }
        } else {
            act = strictest(rules, act);
        }
    }
    if act == action::ALLOW {
        return;
    }
    let mut ev = ProfileEvent::default();
    ev.taken = via;
    if act == action::KILL {
        // SAFETY: sends to the current task; no pointers.
        let r = unsafe { bpf_send_signal(SIGKILL) };
        if r == 0 {
            ev.taken |= taken::KILLED;
            count(counter::PROFILE_KILLS);
        } else {
            ev.taken |= taken::KILL_FAILED;
        }
    }
    let cur = fill_header(&mut ev.header, EventKind::Profile as u32, cfg, pid_tgid);
    with_pid_view(&mut ev.header, &cur, cfg);
    ev.header.size = size_of::<ProfileEvent>() as u32;
    ev.nr = nr as u32;
    ev.slot = slot;
    ev.action = act;
    ev.args = args();
    count(counter::PROFILE_VERDICTS);
    emit(
        &ev,
        &ev.header,
        size_of::<ProfileEvent>(),
        counter::DROP_PROFILE,
    );
}

/// The most severe of `act` and the rules' actions (`action` values grow with severity).
#[inline(always)]
fn strictest(rules: &ArgRules, act: u32) -> u32 {
    let n = rules.nrules as usize;
    let mut most = act;
    for i in 0..MAX_ARG_RULES {
        if i >= n {
            break;
        }
        let a = rules.rules[i].action;
        if a > most && a <= action::KILL {
            most = a;
        }
    }
    most
}

/// The action of the first rule whose conditions all hold.
#[inline(always)]
fn match_rules(rules: &ArgRules, args: &[u64; 6]) -> Option<u32> {
    let n = rules.nrules as usize;
    for i in 0..MAX_ARG_RULES {
        if i >= n {
            break;
        }
        let rule = &rules.rules[i];
        let nc = rule.nconds as usize;
        let mut all = true;
        for j in 0..MAX_ARG_CONDS {
            if j >= nc {
                break;
            }
            let c = &rule.conds[j];
            // A bounds check the verifier follows (a modulo it cannot bound).
            let Some(&a) = args.get(c.index as usize) else {
                all = false;
                break;
            };
            // The bits the kernel reads of an int or umode_t argument; the rest is anything a
            // caller likes (socket(AF_PACKET | 1 << 32, ...) is an AF_PACKET socket).
            let a = if c.op & arg_op::LOW16 != 0 {
                a & 0xffff
            } else if c.op & arg_op::LOW32 != 0 {
                a & 0xffff_ffff
            } else {
                a
            };
            let ok = match c.op & arg_op::OP {
                arg_op::EQ => a == c.value,
                arg_op::NE => a != c.value,
                arg_op::LT => a < c.value,
                arg_op::LE => a <= c.value,
                arg_op::GT => a > c.value,
                arg_op::GE => a >= c.value,
                arg_op::MASKED_EQ => a & c.mask == c.value,
                arg_op::MASKED_ANY => a & c.value != 0,
                _ => false,
            };
            if !ok {
                all = false;
                break;
            }
        }
        if all {
            return Some(rule.action);
        }
    }
    None
}

/// Marks syscall `nr` as seen by `cgroup`. A plain byte store: no read-modify-write, so
/// concurrent CPUs cannot lose each other's marks.
#[inline(always)]
fn record(cgroup: u64, nr: u32) {
    if let Some(seen) = PROFILE_RECORD.get_ptr_mut(&cgroup) {
        // Masked after a volatile read: the caller's `nr < MAX_SYSCALL_NR` let LLVM drop a
        // plain mask, and a spill between that check and this use loses the bound on older
        // verifiers (6.1 and 5.10 rejected the program when register allocation changed).
        // SAFETY: reads a parameter.
        let i = (unsafe { core::ptr::read_volatile(&nr) } & (MAX_SYSCALL_NR - 1)) as usize;
        // SAFETY: the map value of this cgroup; i < MAX_SYSCALL_NR, the array's length.
        unsafe {
            let p = (*seen).seen.as_mut_ptr().add(i);
            if *p == 0 {
                *p = 1;
            }
        }
    }
}
