export * from './fakeEc2Server.js';
