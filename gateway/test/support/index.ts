export * from './fakeEc2Server.js';
export { routingTableContract, type RoutingTableFixture } from './routingTableContract.js';
export { identityStoreContract } from './identityStoreContract.js';
export * from './instanceIdentityFixture.js';
export * from '../oidc/testIssuer.js';
