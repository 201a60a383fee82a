// The TypeScript SDK (1.32) as a client of nmap-mcp serve: answers the
// approval elicitation (approve, deny, no answer), calls nmap_scan as a task
// (create, result, get, list, cancel), and reads a task back after a restart.
// Run by TestTypeScriptSDK (tssdk_e2e_test.go); prints one JSON object.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { ElicitRequestSchema, CreateTaskResultSchema, CallToolResultSchema } from '@modelcontextprotocol/sdk/types.js';

const [BIN, CFG] = process.argv.slice(2);
let answer = 'approve';
let asked = 0;
async function connect() {
  const t = new StdioClientTransport({ command: BIN, args: ['serve', '--config', CFG], env: process.env, stderr: 'ignore' });
  const c = new Client({ name: 'ts-sdk-test', version: '1' }, { capabilities: { elicitation: { form: {} } } });
  c.setRequestHandler(ElicitRequestSchema, async (req) => {
    asked++;
    if (!req.params.message.includes('Rule "two-ports"')) throw new Error('question lacks the rule: ' + req.params.message);
    if (answer === 'none') { await new Promise(r => setTimeout(r, 6000)); return { action: 'cancel' }; }
    if (answer === 'deny') return { action: 'decline' };
    return { action: 'accept', content: { decision: 'approve', reason: 'ts says yes' } };
  });
  await c.connect(t);
  return c;
}
const text = (r) => (r.content || []).map(x => x.text || '').join('');
const out = {};
let c = await connect();
const loud = { name: 'nmap_scan', arguments: { targets: '127.0.0.1', ports: '1,2' } };
let r = await c.callTool(loud, undefined, { timeout: 120000 });
out.approve = { isError: !!r.isError, status: r.structuredContent?.status, approval: r.structuredContent?.approval, asked };
answer = 'deny';
r = await c.callTool(loud, undefined, { timeout: 120000 });
out.deny = { isError: !!r.isError, text: text(r).slice(0, 120) };
answer = 'none';
let t0 = Date.now();
r = await c.callTool(loud, undefined, { timeout: 120000 });
out.noAnswer = { isError: !!r.isError, text: text(r).slice(0, 140), seconds: (Date.now() - t0) / 1000 };
// Tasks: a one-port scan (no rule asks) as a task.
const created = await c.request({ method: 'tools/call', params: { name: 'nmap_scan', arguments: { targets: '127.0.0.1', ports: '1' }, task: { ttl: 600000 } } }, CreateTaskResultSchema);
const id = created.task.taskId;
out.taskCreated = created.task;
const res = await c.experimental.tasks.getTaskResult(id, CallToolResultSchema);
out.taskResult = { isError: !!res.isError, status: res.structuredContent?.status, scan_id: res.structuredContent?.scan_id };
out.taskGet = await c.experimental.tasks.getTask(id);
out.taskList = (await c.experimental.tasks.listTasks()).tasks.map(x => x.taskId + ':' + x.status);
// Cancel: a slow scan as a task.
const slow = await c.request({ method: 'tools/call', params: { name: 'nmap_scan', arguments: { targets: '127.0.0.1', ports: '1', timing: 'T0', timeout_seconds: 60 }, task: {} } }, CreateTaskResultSchema);
await new Promise(r => setTimeout(r, 1500));
out.cancel = await c.experimental.tasks.cancelTask(slow.task.taskId);
await c.close();
// Restart: a new server on the same history knows the task.
c = await connect();
out.afterRestart = await c.experimental.tasks.getTask(id);
await c.close();
console.log(JSON.stringify(out, null, 1));
