import { readFileSync } from 'node:fs';

// Linux reports utime/stime in USER_HZ ticks, which the kernel fixes at 100 for userspace on
// every architecture Node runs on.
const TICKS_PER_SECOND = 100;

// CPU time (user + system, seconds) a process has used so far, from /proc/PID/stat; undefined
// where there is no /proc or the process is gone. Children's time is not included.
export function processCpuSeconds(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // Field 2 (comm) is in parentheses and may contain spaces; count from after its close.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // After comm: state is field 3, so utime (14) and stime (15) are at indexes 11 and 12.
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) return undefined;
  return (utime + stime) / TICKS_PER_SECOND;
}
