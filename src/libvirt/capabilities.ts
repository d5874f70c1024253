/** Facts from libvirt's host capabilities XML (virConnectGetCapabilities). */
import { parseXml } from "./domain-xml.js";

/**
 * The uid and gid qemu processes of `domainType` ("kvm", "qemu") run as under the DAC security
 * model (`<secmodel><model>dac</model><baselabel type='kvm'>+64055:+64055</baselabel>`); null
 * without a DAC model (a session URI: qemu runs as the user) or a numeric label.
 */
export function qemuProcessOwner(capabilitiesXml: string, domainType: string): { uid: number; gid: number } | null {
  const doc = parseXml(capabilitiesXml, "capabilities XML");
  for (const secmodel of Array.from(doc.getElementsByTagName("secmodel"))) {
    const model = secmodel.getElementsByTagName("model")[0]?.textContent?.trim();
    if (model !== "dac") continue;
    const labels = Array.from(secmodel.getElementsByTagName("baselabel"));
    const label = labels.find((l) => l.getAttribute("type") === domainType) ?? labels[0];
    const m = /^\+(\d+):\+(\d+)$/.exec(label?.textContent?.trim() ?? "");
    if (m) return { uid: Number(m[1]), gid: Number(m[2]) };
  }
  return null;
}
