import { randomBytes } from "node:crypto";
import { chmod, copyFile, open, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

// Readers (the runtime exec'ing the plugin, libcni reading the conflist) must never see a
// half-written file: write a hidden temp file in the same directory, then rename over.
function tempPath(target: string): string {
  return join(dirname(target), `.${basename(target)}.tmp-${randomBytes(4).toString("hex")}`);
}

export async function writeFileAtomic(target: string, content: string | Buffer, mode: number): Promise<void> {
  const tmp = tempPath(target);
  try {
    const fh = await open(tmp, "wx", mode);
    try {
      await fh.writeFile(content);
      await fh.chmod(mode); // open()'s mode is filtered by the umask
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, target);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

export async function copyFileAtomic(source: string, target: string, mode: number): Promise<void> {
  const tmp = tempPath(target);
  try {
    await copyFile(source, tmp);
    await chmod(tmp, mode);
    await rename(tmp, target);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}
