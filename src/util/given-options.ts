/** What a command's parsed options say besides their values. */
export interface GivenOptions {
  /** The argparse dests given on the command line (not defaulted), e.g. "ssh_port". */
  given: ReadonlySet<string>;
}
