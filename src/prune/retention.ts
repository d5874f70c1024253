/**
 * Which chains to keep (docs/prune.md, "Keep rules"): Proxmox Backup Server's prune rules,
 * applied to whole chains. A chain counts once, at the time of its full (or copy) backup.
 *
 * The rules run in the order keep-last, -hourly, -daily, -weekly, -monthly, -yearly, each over the
 * chains, newest first, that no earlier rule marked: a chain whose period (its hour, day, ISO
 * week, month or year in local time) a kept chain already covers is skipped; the first chain of a
 * new period is kept until the rule has kept N periods; a later chain of a period the rule itself
 * just kept is marked for removal, so later rules do not look at it (PBS's `mark_selections`).
 * Whatever no rule kept goes. Without any keep option everything is kept.
 */

export interface KeepRules {
  last: number;
  hourly: number;
  daily: number;
  weekly: number;
  monthly: number;
  yearly: number;
}

export const RULE_NAMES = ["last", "hourly", "daily", "weekly", "monthly", "yearly"] as const satisfies readonly (keyof KeepRules)[];
export type RuleName = (typeof RULE_NAMES)[number];

export interface Decision {
  keep: boolean;
  /** Why, for `--dry-run` and the log: `keep-daily 2026-12-04`, `same day as a newer chain (keep-daily)`, `no keep rule selects it`. */
  reason: string;
}

const p2 = (n: number): string => String(n).padStart(2, "0");

/** ISO 8601 week of a local date: `YYYY-Www` (weeks start on Monday; week 1 holds the year's first Thursday). */
export function isoWeek(d: Date): string {
  const day = (d.getDay() + 6) % 7; // Monday 0 … Sunday 6
  const thursday = new Date(d.getFullYear(), d.getMonth(), d.getDate() - day + 3);
  const jan1 = new Date(thursday.getFullYear(), 0, 1);
  const week = 1 + Math.floor(Math.round((thursday.getTime() - jan1.getTime()) / 86_400_000) / 7);
  return `${thursday.getFullYear()}-W${p2(week)}`;
}

/** The period a rule groups by, in local time. keep-last: every chain is its own. */
export function periodOf(rule: RuleName, d: Date, uniqueId: string): string {
  const ymd = `${d.getFullYear()}-${p2(d.getMonth() + 1)}-${p2(d.getDate())}`;
  switch (rule) {
    case "last":
      return uniqueId;
    case "hourly":
      return `${ymd} ${p2(d.getHours())}h`;
    case "daily":
      return ymd;
    case "weekly":
      return isoWeek(d);
    case "monthly":
      return ymd.slice(0, 7);
    case "yearly":
      return String(d.getFullYear());
  }
}

const PERIOD_WORD: Record<RuleName, string> = { last: "", hourly: "hour", daily: "day", weekly: "week", monthly: "month", yearly: "year" };

export const keepsSomething = (rules: KeepRules): boolean => RULE_NAMES.some((r) => rules[r] > 0);

export interface Dated {
  /** Unique among the items (the chain's location). */
  id: string;
  time: Date;
}

/** A decision for every item; items are taken newest first whatever their order here. */
export function selectKeep(items: readonly Dated[], rules: KeepRules): Map<string, Decision> {
  const marks = new Map<string, Decision>();
  const newestFirst = [...items].sort((a, b) => b.time.getTime() - a.time.getTime() || (a.id < b.id ? 1 : -1));
  if (!keepsSomething(rules)) {
    for (const item of newestFirst) marks.set(item.id, { keep: true, reason: "no keep option given" });
    return marks;
  }
  for (const rule of RULE_NAMES) if (rules[rule] > 0) markRule(marks, newestFirst, rule, rules[rule]);
  for (const item of newestFirst) if (!marks.has(item.id)) marks.set(item.id, { keep: false, reason: "no keep rule selects it" });
  return marks;
}

function markRule(marks: Map<string, Decision>, newestFirst: readonly Dated[], rule: RuleName, keep: number): void {
  const period = (item: Dated) => periodOf(rule, item.time, item.id);
  const covered = new Set(newestFirst.filter((i) => marks.get(i.id)?.keep).map(period));
  const kept = new Set<string>();
  for (const item of newestFirst) {
    if (marks.has(item.id)) continue;
    const p = period(item);
    if (covered.has(p)) continue;
    if (!kept.has(p)) {
      if (kept.size >= keep) break;
      kept.add(p);
      marks.set(item.id, { keep: true, reason: rule === "last" ? `keep-last ${kept.size}` : `keep-${rule} ${p}` });
    } else {
      marks.set(item.id, { keep: false, reason: `a newer chain of the same ${PERIOD_WORD[rule]} is kept (keep-${rule} ${p})` });
    }
  }
}
