/** A saveset that does not follow the stream format; names the file and the byte offset. */
export class StreamFormatError extends Error {
  constructor(
    readonly file: string,
    readonly offset: number,
    readonly reason: string,
  ) {
    super(`${file}: at byte ${offset}: ${reason}`);
    this.name = "StreamFormatError";
  }
}
