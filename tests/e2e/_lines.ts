/**
 * Splits a text stream into lines (std's TextLineStream is on jsr, which is
 * unreachable from our build machines).
 *
 * @module
 */

/** A TransformStream from text chunks to lines without their newline. */
export class TextLineStream extends TransformStream<string, string> {
  constructor() {
    let buffer = "";
    super({
      transform(chunk, controller) {
        buffer += chunk;
        const lines = buffer.split("\n");
        buffer = lines.pop()!;
        for (const line of lines) controller.enqueue(line.replace(/\r$/, ""));
      },
      flush(controller) {
        if (buffer !== "") controller.enqueue(buffer);
      },
    });
  }
}
