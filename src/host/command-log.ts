/**
 * A Host that says, at DEBUG, every command it runs or starts (`-v`: "commands run"), and is
 * otherwise the host it wraps: the same object to `instanceof` and every other method
 * (restic's backend style: behaviour added by a wrapper, the interface unchanged).
 */
import type { Host } from "./host.js";

export function withCommandLog<H extends Host>(host: H, debug: (m: string) => void): H {
  const where = host.remote ? ` on [${host.name}]` : "";
  const say = (command: string, args: readonly string[]) => debug(`Running${where}: [${[command, ...args].join(" ")}]`);
  return new Proxy(host, {
    get(target, prop, receiver) {
      if (prop === "run") return (command: string, args: readonly string[]) => (say(command, args), target.run(command, args));
      if (prop === "spawn") return (command: string, args: readonly string[]) => (say(command, args), target.spawn(command, args));
      const value: unknown = Reflect.get(target, prop, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}
