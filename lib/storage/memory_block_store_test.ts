import { testBlockStore } from "./_block_store_conformance.ts";
import { MemoryBlockStore } from "./memory_block_store.ts";

testBlockStore("MemoryBlockStore", (options) => Promise.resolve(new MemoryBlockStore(options)), {
  corrupt: (store, ref, offsetBytes) => {
    (store as MemoryBlockStore).corruptForTest(ref, offsetBytes);
    return Promise.resolve();
  },
  readsNow: true,
});
