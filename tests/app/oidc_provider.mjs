// A real OpenID Connect provider on 127.0.0.1 for the sign-in tests (oauth2-mock-server): it signs in whoever the
// file named by the first argument names, prints its issuer URL, and stops on SIGTERM.
import { OAuth2Server } from 'oauth2-mock-server';
import fs from 'node:fs';

const userFile = process.argv[2];
const server = new OAuth2Server();
await server.issuer.keys.generate('RS256');
await server.start(0, '127.0.0.1');
server.issuer.url = `http://127.0.0.1:${server.address().port}`;
server.service.on('beforeTokenSigning', (token) => {
  const email = fs.readFileSync(userFile, 'utf8').trim();
  Object.assign(token.payload, { email, email_verified: true, name: email.split('@')[0] });
});
console.log(server.issuer.url);
process.on('SIGTERM', async () => { await server.stop(); process.exit(0); });
