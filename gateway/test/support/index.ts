export * from './fakeEc2Server.js';
export { routingTableContract, type RoutingTableFixture } from './routingTableContract.js';
