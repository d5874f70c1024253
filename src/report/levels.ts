/** Log levels with Python's numbers (the original's logging module). */
export type LevelName = "DEBUG" | "INFO" | "WARNING" | "ERROR" | "CRITICAL";

export const LEVELS: Readonly<Record<LevelName, number>> = {
  DEBUG: 10,
  INFO: 20,
  WARNING: 30,
  ERROR: 40,
  CRITICAL: 50,
};
