// An esbuild plugin for scripts/bundle.js (tested in test/unit/cli-load-bundle.test.ts).
import { readFile } from "node:fs/promises";

/**
 * xmldom's table of ~2100 HTML entities is built and frozen when the module loads (6 ms of each
 * start here, 2026-12-05), for HTML documents only: libvirt's XML uses the five XML entities. The
 * table becomes a getter that builds it on first use. The build fails when the file no longer
 * reads as expected (an xmldom update): then look again.
 */
export const xmldomLazyHtmlEntities = {
  name: "xmldom-lazy-html-entities",
  setup(b) {
    b.onLoad({ filter: /@xmldom.xmldom.lib.entities\.js$/ }, async (a) => {
      const text = await readFile(a.path, "utf8");
      const table = "exports.HTML_ENTITIES = freeze({";
      const alias = "exports.entityMap = exports.HTML_ENTITIES;";
      if (text.split(table).length !== 2 || text.split(alias).length !== 2) throw new Error(`${a.path}: not the layout scripts/bundle.js expects`);
      const lazy =
        "var htmlEntities;\n" +
        "Object.defineProperty(exports, 'HTML_ENTITIES', { enumerable: true, get: function () { return (htmlEntities = htmlEntities || buildHtmlEntities()); } });\n" +
        "Object.defineProperty(exports, 'entityMap', { enumerable: true, get: function () { return exports.HTML_ENTITIES; } });";
      return { contents: text.replace(table, "function buildHtmlEntities() { return freeze({").replace(alias, `}\n${lazy}`), loader: "js" };
    });
  },
};
