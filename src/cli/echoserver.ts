import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { argvWithEnv } from './env-options.js';
import { runService, SERVICE_POSITIONALS, withServiceOptions } from './service-runner.js';
import { usageFailure } from './common.js';

const parser = withServiceOptions(
  yargs(hideBin(process.argv))
    .scriptName('echoserver')
    .usage('$0 RELAYHOST RELAYPORT [options]\n\nAn example relayed service: echoes every byte of every client back to it.')
    .command('$0 <relayhost> <relayport>', false)
    .example('$0 localhost 8080', 'prints "established relay address: localhost:8081"; try nc localhost 8081')
    .example('RELAY_SECRET=s3cret $0 relay.example.com 8080', 'register with a relay that requires a secret')
    .fail(usageFailure('echoserver', 'RELAYHOST RELAYPORT')),
);
const args = await parser.parseAsync(argvWithEnv(parser, SERVICE_POSITIONALS));

runService('echoserver', args, (socket) => {
  // Half-close is kept: the client's FIN ends our echo only after every byte went back.
  socket.on('error', () => socket.destroy());
  socket.pipe(socket);
});
