import { MemoryRoutingTable } from '../../src/routing/memoryRoutingTable.js';
import { routingTableContract } from '../support/routingTableContract.js';

// One instance seen by three "replicas": in one process they share the same object.
routingTableContract('MemoryRoutingTable', async () => {
  const table = new MemoryRoutingTable();
  return { tables: [table, table, table], cleanup: () => table.close() };
});
