/** SIGTERM at every phase of full/inc/diff runs: see crash-kill.test.ts. */
import { phaseTrialsTest } from "../helpers/crash-phase-test.js";

phaseTrialsTest("SIGTERM");
