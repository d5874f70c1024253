/**
 * Domain XML helpers on @xmldom/xmldom. Parsing keeps the whole document, so elements and
 * attributes these helpers do not know (qemu:commandline, metadata, comments, …) survive
 * `toString()` unchanged. Serialization uses double-quoted attributes (libvirt accepts both).
 *
 *   const dom = DomainXml.parse(await domain.xmlDesc());
 *   for (const disk of dom.disks()) disk.target, disk.device, disk.format, disk.source, …
 *   dom.osPaths()            // { loader, nvram, kernel, initrd }
 *   dom.tpms()               // [{ model, backendType, … }]
 *   disk.setSourceFile(p); disk.removeFirstBackingStore(); dom.removeUuid(); dom.name = "x";
 *   dom.toString()
 *
 * Which disks a backup takes is decided elsewhere (docs/behaviour.md, "Disk selection"); this module only reads and
 * edits the XML.
 */
import {
  DOMParser,
  XMLSerializer,
  onErrorStopParsing,
  type Document,
  type Element,
  type Node,
} from "@xmldom/xmldom";

/** Namespace of `<qemu:…>` elements in domain XML. */
export const QEMU_NAMESPACE = "http://libvirt.org/schemas/domain/qemu/1.0";

const ELEMENT_NODE = 1;

export class XmlError extends Error {
  override readonly name = "XmlError";
}

/** Parses an XML document; malformed input throws an XmlError naming `what`. */
export function parseXml(xml: string, what = "XML document"): Document {
  let doc: Document;
  try {
    doc = new DOMParser({ onError: onErrorStopParsing }).parseFromString(xml, "text/xml");
  } catch (e) {
    const msg = e instanceof Error ? e.message.split("\n")[0] : String(e);
    throw new XmlError(`cannot parse ${what}: ${msg}`);
  }
  if (!doc.documentElement) throw new XmlError(`cannot parse ${what}: no root element`);
  return doc;
}

/** Serializes a document (or element) back to a string. */
export function serializeXml(node: Node): string {
  return new XMLSerializer().serializeToString(node);
}

/** Direct child elements of `el`, optionally only those named `name` (no namespace prefix). */
export function childElements(el: Element, name?: string): Element[] {
  const out: Element[] = [];
  for (let n = el.firstChild; n; n = n.nextSibling) {
    if (n.nodeType === ELEMENT_NODE && (name === undefined || n.nodeName === name)) out.push(n as Element);
  }
  return out;
}

/** First direct child element named `name`, or null. */
export function childElement(el: Element, name: string): Element | null {
  for (let n = el.firstChild; n; n = n.nextSibling) {
    if (n.nodeType === ELEMENT_NODE && n.nodeName === name) return n as Element;
  }
  return null;
}

/** Follows a `a/b/c` path of first children, or null. */
export function elementAt(el: Element, path: string): Element | null {
  let cur: Element | null = el;
  for (const part of path.split("/")) {
    if (!cur) return null;
    cur = childElement(cur, part);
  }
  return cur;
}

/** Text content of an element, or null for a missing element. */
export function textOf(el: Element | null): string | null {
  return el ? (el.textContent ?? "") : null;
}

/** Attribute value, or null when the element or attribute is missing. */
export function attr(el: Element | null, name: string): string | null {
  if (!el || !el.hasAttribute(name)) return null;
  return el.getAttribute(name);
}

function removeElement(el: Element): void {
  // Also drop the whitespace text node before it, so the indentation stays tidy.
  const prev = el.previousSibling;
  const parent = el.parentNode;
  if (!parent) return;
  if (prev && prev.nodeType === 3 && /^\s*$/.test(prev.nodeValue ?? "")) parent.removeChild(prev);
  parent.removeChild(el);
}

/** `<host>` of a network disk source. */
export interface DiskSourceHost {
  name: string | null;
  port: string | null;
  transport: string | null;
  socket: string | null;
}

/** The attributes of a disk's `<source>` that matter for backups; unset ones are null. */
export interface DiskSource {
  file: string | null;
  dev: string | null;
  dir: string | null;
  pool: string | null;
  volume: string | null;
  /** Network disks: protocol ("nbd", "rbd", "iscsi", …) and name. */
  protocol: string | null;
  name: string | null;
  hosts: DiskSourceHost[];
}

/** One `<backingStore>` level of a disk. */
export interface BackingStore {
  type: string | null;
  format: string | null;
  file: string | null;
  dev: string | null;
}

/** A disk's `source/dataStore` (qcow2 external data file). */
export interface DataStore {
  type: string | null;
  format: string | null;
  file: string | null;
  dev: string | null;
}

/** `<tpm>` device. */
export interface TpmInfo {
  model: string | null;
  /** "emulator" (swtpm: state on the host, not part of the disks), "passthrough", … */
  backendType: string | null;
  backendVersion: string | null;
  /** emulator backends: persistent_state attribute. */
  persistentState: string | null;
}

/** A `devices/disk` element. Getters read the live element; setters edit it in place. */
export class DomainDisk {
  constructor(readonly element: Element) {}

  /** `@type`: "file", "block", "network", "volume", "dir", … */
  get type(): string | null {
    return attr(this.element, "type");
  }
  set type(value: string) {
    this.element.setAttribute("type", value);
  }

  /** `@device`: "disk" (libvirt's default when missing), "cdrom", "floppy", "lun". */
  get device(): string {
    return attr(this.element, "device") ?? "disk";
  }

  /** `target/@dev`, e.g. "sda". */
  get target(): string | null {
    return attr(childElement(this.element, "target"), "dev");
  }

  /** `target/@bus`, e.g. "sata", "virtio". */
  get bus(): string | null {
    return attr(childElement(this.element, "target"), "bus");
  }

  /** `driver/@name` ("qemu"). */
  get driverName(): string | null {
    return attr(childElement(this.element, "driver"), "name");
  }

  /** `driver/@type`: the image format, "qcow2" or "raw". */
  get format(): string | null {
    return attr(childElement(this.element, "driver"), "type");
  }

  /** `driver/@discard` ("unmap", "ignore"). */
  get discard(): string | null {
    return attr(childElement(this.element, "driver"), "discard");
  }

  /** `<source>` attributes, or null when there is no source (e.g. an empty cdrom). */
  get source(): DiskSource | null {
    const s = childElement(this.element, "source");
    if (!s) return null;
    return {
      file: attr(s, "file"),
      dev: attr(s, "dev"),
      dir: attr(s, "dir"),
      pool: attr(s, "pool"),
      volume: attr(s, "volume"),
      protocol: attr(s, "protocol"),
      name: attr(s, "name"),
      hosts: childElements(s, "host").map((h) => ({
        name: attr(h, "name"),
        port: attr(h, "port"),
        transport: attr(h, "transport"),
        socket: attr(h, "socket"),
      })),
    };
  }

  /** The local path for file (source/@file) and block (source/@dev) disks, else null. */
  get sourcePath(): string | null {
    const s = this.source;
    if (!s) return null;
    if (this.type === "file") return s.file;
    if (this.type === "block") return s.dev;
    return null;
  }

  /** The `backingStore` chain, outermost first; empty `<backingStore/>` terminators are skipped. */
  backingStores(): BackingStore[] {
    const out: BackingStore[] = [];
    let bs = childElement(this.element, "backingStore");
    while (bs) {
      const src = childElement(bs, "source");
      if (src || bs.hasAttribute("type")) {
        out.push({
          type: attr(bs, "type"),
          format: attr(childElement(bs, "format"), "type"),
          file: attr(src, "file"),
          dev: attr(src, "dev"),
        });
      }
      bs = childElement(bs, "backingStore");
    }
    return out;
  }

  /** `backingStore/source/@file` of every level (what the original records per disk). */
  backingStoreFiles(): string[] {
    return this.backingStores()
      .map((b) => b.file)
      .filter((f): f is string => f !== null);
  }

  /** `source/dataStore`, or null. */
  get dataStore(): DataStore | null {
    const ds = elementAt(this.element, "source/dataStore");
    if (!ds) return null;
    const src = childElement(ds, "source");
    return {
      type: attr(ds, "type"),
      format: attr(childElement(ds, "format"), "type"),
      file: attr(src, "file"),
      dev: attr(src, "dev"),
    };
  }

  #sourceElement(): Element {
    let s = childElement(this.element, "source");
    if (!s) {
      s = this.element.ownerDocument!.createElement("source");
      const driver = childElement(this.element, "driver");
      this.element.insertBefore(s, driver ? driver.nextSibling : this.element.firstChild);
    }
    return s;
  }

  /** Sets `source/@file` (creating `<source>` if needed). Does not change `@type`. */
  setSourceFile(path: string): void {
    this.#sourceElement().setAttribute("file", path);
  }

  /** Sets `source/@dev` (creating `<source>` if needed). */
  setSourceDev(path: string): void {
    this.#sourceElement().setAttribute("dev", path);
  }

  /** Removes an attribute of `<source>` (e.g. "pool", "volume"). */
  removeSourceAttribute(name: string): void {
    childElement(this.element, "source")?.removeAttribute(name);
  }

  /** Sets `dataStore/source/@file`, or `@dev` when that is the one present. False without a dataStore. */
  setDataStorePath(path: string): boolean {
    const src = elementAt(this.element, "source/dataStore/source");
    if (!src) return false;
    if (src.hasAttribute("dev") && !src.hasAttribute("file")) src.setAttribute("dev", path);
    else src.setAttribute("file", path);
    return true;
  }

  /** Removes the first `<backingStore>` child (with its chain). False if there is none. */
  removeFirstBackingStore(): boolean {
    const bs = childElement(this.element, "backingStore");
    if (!bs) return false;
    removeElement(bs);
    return true;
  }

  /**
   * A qcow2 image over a read-only NBD backing (live restore): `<driver type='qcow2'>`, any
   * backing chain replaced by `<backingStore type='network'>` with the unix socket, the export
   * and qemu's reconnect delay (requests wait that long for a server that went away).
   */
  setNbdBackingStore(o: { socket: string; exportName: string; reconnectDelay: number }): void {
    while (this.removeFirstBackingStore());
    const doc = this.element.ownerDocument!;
    const el = (name: string, attrs: Record<string, string>): Element => {
      const e = doc.createElement(name);
      for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
      return e;
    };
    const driver = childElement(this.element, "driver") ?? (this.element.insertBefore(el("driver", { name: "qemu" }), this.element.firstChild) as Element);
    driver.setAttribute("type", "qcow2");
    const bs = el("backingStore", { type: "network" });
    bs.appendChild(el("format", { type: "raw" }));
    const src = el("source", { protocol: "nbd", name: o.exportName });
    bs.appendChild(src);
    src.appendChild(el("host", { transport: "unix", socket: o.socket }));
    src.appendChild(el("reconnect", { delay: String(o.reconnectDelay) }));
    const source = childElement(this.element, "source");
    this.element.insertBefore(bs, source ? source.nextSibling : null);
  }

  /** Removes this disk from the document. */
  remove(): void {
    removeElement(this.element);
  }
}

/** A parsed domain XML document. */
export class DomainXml {
  private constructor(readonly document: Document) {}

  static parse(xml: string): DomainXml {
    const doc = parseXml(xml, "domain XML");
    if (doc.documentElement!.nodeName !== "domain") {
      throw new XmlError(`not a domain XML document: root element <${doc.documentElement!.nodeName}>`);
    }
    return new DomainXml(doc);
  }

  get root(): Element {
    return this.document.documentElement!;
  }

  /** `@type`: "kvm", "qemu", … */
  get type(): string | null {
    return attr(this.root, "type");
  }

  /**
   * True when the XML is a running instance's: libvirt writes `@id` only while the domain is
   * active ("inactive machines have no id value", formatdomain), the same test as
   * virDomainIsActive, from the XML the run fetches anyway (one libvirt round trip less).
   */
  get active(): boolean {
    const id = attr(this.root, "id");
    return id !== null && /^\d+$/.test(id);
  }

  get name(): string {
    return textOf(childElement(this.root, "name")) ?? "";
  }
  set name(value: string) {
    let el = childElement(this.root, "name");
    if (!el) {
      el = this.document.createElement("name");
      this.root.insertBefore(el, this.root.firstChild);
    }
    el.textContent = value;
  }

  get uuid(): string | null {
    return textOf(childElement(this.root, "uuid"));
  }

  /** Removes `<uuid>`; true if there was one. */
  removeUuid(): boolean {
    const el = childElement(this.root, "uuid");
    if (!el) return false;
    removeElement(el);
    return true;
  }

  /** Every `devices/disk`, in document order. */
  disks(): DomainDisk[] {
    const devices = childElement(this.root, "devices");
    return devices ? childElements(devices, "disk").map((d) => new DomainDisk(d)) : [];
  }

  /** The disk with `target/@dev == target`, if any. */
  disk(target: string): DomainDisk | undefined {
    return this.disks().find((d) => d.target === target);
  }

  /** Removes the disk with the given target; true if found. */
  removeDisk(target: string): boolean {
    const d = this.disk(target);
    if (!d) return false;
    d.remove();
    return true;
  }

  /** Text of `os/loader`, `os/nvram`, `os/kernel`, `os/initrd` (only those present). */
  osPaths(): { loader?: string; nvram?: string; kernel?: string; initrd?: string } {
    const os = childElement(this.root, "os");
    const out: { loader?: string; nvram?: string; kernel?: string; initrd?: string } = {};
    if (!os) return out;
    for (const key of ["loader", "nvram", "kernel", "initrd"] as const) {
      const el = childElement(os, key);
      if (el) out[key] = el.textContent ?? "";
    }
    return out;
  }

  /** Points `os/<kind>` at another file (its attributes stay); false when the domain has none. */
  setOsPath(kind: "loader" | "nvram" | "kernel" | "initrd", path: string): boolean {
    const os = childElement(this.root, "os");
    const el = os ? childElement(os, kind) : null;
    if (!el) return false;
    el.textContent = path;
    return true;
  }

  /** Every `devices/tpm`. */
  tpms(): TpmInfo[] {
    const devices = childElement(this.root, "devices");
    if (!devices) return [];
    return childElements(devices, "tpm").map((t) => {
      const backend = childElement(t, "backend");
      return {
        model: attr(t, "model"),
        backendType: attr(backend, "type"),
        backendVersion: attr(backend, "version"),
        persistentState: attr(backend, "persistent_state"),
      };
    });
  }

  /** True when a `<qemu:capabilities><qemu:add capability="name"/>` is present. */
  hasQemuCapability(name: string): boolean {
    for (const caps of childElements(this.root)) {
      if (caps.localName !== "capabilities" || caps.namespaceURI !== QEMU_NAMESPACE) continue;
      for (const add of childElements(caps)) {
        if (add.localName === "add" && add.namespaceURI === QEMU_NAMESPACE && add.getAttribute("capability") === name) {
          return true;
        }
      }
    }
    return false;
  }

  /** The document as a string; unknown elements, attributes and comments are kept. */
  toString(): string {
    return serializeXml(this.document);
  }
}
