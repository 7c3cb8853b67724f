import { testMetadataService } from "./_metadata_conformance.ts";
import { MemoryMetadata, MemoryMetadataStore } from "./memory_metadata.ts";

testMetadataService("MemoryMetadata", (clock) => {
  const store = new MemoryMetadataStore();
  const a = new MemoryMetadata({ clock, store, uuid: "client-a" });
  const b = new MemoryMetadata({ clock, store, uuid: "client-b" });
  return Promise.resolve({
    a,
    b,
    close: async () => {
      await a.close();
      await b.close();
    },
  });
});
