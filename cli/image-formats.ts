// Disk images in a container format, told by their signatures. Imported as they are,
// such a file would give the volume the container's headers and tables instead of the
// disk inside it, and nothing would complain until the guest failed to boot. These are
// the formats `qemu-img` recognises by their bytes, which it can convert to raw.

/** Bytes at the start of a file that every signature below lies within. */
export const IMAGE_HEAD_BYTES = 512;
/** A VHD's footer: the last 512 bytes of the file. */
export const IMAGE_FOOTER_BYTES = 512;

export interface ImageFormat {
  /** How messages name it: "qcow2", "VMDK". */
  name: string;
  /** qemu-img's -f name, given in the conversion command only where qemu-img would not recognise the file itself. */
  qemuFormatOption: string | null;
}

interface Signature {
  offset: number;
  bytes: Buffer;
  format: ImageFormat;
}

function signature(offset: number, bytes: string | number[], name: string): Signature {
  return {
    offset,
    bytes: typeof bytes === "string" ? Buffer.from(bytes, "latin1") : Buffer.from(bytes),
    format: { name, qemuFormatOption: null },
  };
}

const HEAD_SIGNATURES: readonly Signature[] = [
  // qcow and qcow2 share a magic; the version after it tells them apart (below).
  signature(0, "QFI\xfb", "qcow2"),
  signature(0, "QED\0", "QED"),
  signature(0, "KDMV", "VMDK"),
  signature(0, "COWD", "VMDK"),
  signature(0, "# Disk DescriptorFile", "VMDK"),
  // VirtualBox's u32 0xbeda107f, little-endian, after a 64-byte text banner.
  signature(0x40, [0x7f, 0x10, 0xda, 0xbe], "VDI"),
  signature(0, "vhdxfile", "VHDX"),
  // A dynamic VHD starts with a copy of its footer.
  signature(0, "conectix", "VHD"),
  signature(0, "WithoutFreeSpace", "Parallels"),
  signature(0, "WithouFreSpacExt", "Parallels"),
  signature(0, "Bochs Virtual HD Image", "Bochs"),
];

const VHD_FOOTER = Buffer.from("conectix", "latin1");
/** qemu-img probes a VHD only by its first bytes, so a fixed VHD (footer only) must be named. */
const FIXED_VHD: ImageFormat = { name: "VHD", qemuFormatOption: "vpc" };
const QCOW_VERSION_OFFSET = 4;

function matchesAt(bytes: Uint8Array, offset: number, expected: Buffer): boolean {
  return bytes.length >= offset + expected.length && expected.equals(bytes.subarray(offset, offset + expected.length));
}

/**
 * The container format whose signature `head` (the file's first bytes) or `footer` (its
 * last IMAGE_FOOTER_BYTES, when the file's end is known) carries; null for anything else,
 * which is taken for raw bytes.
 */
export function recogniseImageFormat(head: Uint8Array, footer: Uint8Array | null): ImageFormat | null {
  for (const candidate of HEAD_SIGNATURES) {
    if (!matchesAt(head, candidate.offset, candidate.bytes)) continue;
    if (candidate.format.name === "qcow2" && head.length >= QCOW_VERSION_OFFSET + 4) {
      const version = Buffer.from(head.buffer, head.byteOffset, head.length).readUInt32BE(QCOW_VERSION_OFFSET);
      if (version === 1) return { name: "qcow", qemuFormatOption: null };
    }
    return candidate.format;
  }
  if (footer !== null && footer.length === IMAGE_FOOTER_BYTES && matchesAt(footer, 0, VHD_FOOTER)) return FIXED_VHD;
  return null;
}
