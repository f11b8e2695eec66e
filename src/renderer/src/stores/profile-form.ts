/**
 * The Connections panel's profile form, kept here so it outlives the panel (a visit to another tab unmounts it): what
 * the user typed stays until the user changes it. It starts as the profile in use, or empty: a broker on the standard
 * ports (the machine's own, maybe) is never filled in for the user.
 */
import { defineStore } from 'pinia';
import { reactive, ref, watch } from 'vue';
import type { ConnectionProfile } from '../../../shared/contract';
import { DEFAULT_MQTT_EXCHANGE, DEFAULT_VHOST } from '../../../shared/defaults';
import { generatedClientId } from '../../../shared/profile-checks';
import { useAppStore } from './app';

export interface ProfileForm {
  name: string;
  amqpUrl: string;
  mqttUrl: string;
  managementUrl: string;
  vhost: string;
  exchange: string;
  mqttClientId: string;
  username: string;
  password: string;
  caFile: string;
  certFile: string;
  keyFile: string;
  verify: boolean;
  keepalive: string | number;
  cleanSession: boolean;
  mqttVersion: '4' | '5' | 'auto';
}

export const useProfileFormStore = defineStore('profile-form', () => {
  const app = useAppStore();
  const form = reactive<ProfileForm>({
    name: 'New profile',
    amqpUrl: '',
    mqttUrl: '',
    managementUrl: '',
    vhost: DEFAULT_VHOST,
    exchange: DEFAULT_MQTT_EXCHANGE,
    mqttClientId: generatedClientId(),
    username: '',
    password: '',
    caFile: '',
    certFile: '',
    keyFile: '',
    verify: true,
    keepalive: '',
    cleanSession: true,
    mqttVersion: '4',
  });

  /** The form as a profile (empty fields left out). */
  function profileOf(): ConnectionProfile {
    const text = (value: string): string | undefined => (value.trim() === '' ? undefined : value);
    const tls = { caFile: text(form.caFile), certFile: text(form.certFile), keyFile: text(form.keyFile), ...(form.verify ? {} : { verify: false }) };
    const tlsSet = Object.values(tls).some((value) => value !== undefined);
    const keepalive = typeof form.keepalive === 'number' ? form.keepalive : form.keepalive.trim() === '' ? undefined : Number(form.keepalive);
    return {
      name: form.name,
      amqpUrl: form.amqpUrl,
      mqttUrl: form.mqttUrl,
      managementUrl: form.managementUrl,
      vhost: form.vhost,
      exchange: form.exchange,
      ...(text(form.mqttClientId) !== undefined ? { mqttClientId: form.mqttClientId } : {}),
      ...(text(form.username) !== undefined ? { username: form.username } : {}),
      ...(form.password !== '' ? { password: form.password } : {}),
      ...(tlsSet ? { tls: Object.fromEntries(Object.entries(tls).filter(([, value]) => value !== undefined)) } : {}),
      ...(keepalive !== undefined ? { keepaliveSeconds: keepalive } : {}),
      ...(form.cleanSession ? {} : { cleanSession: false }),
      ...(form.mqttVersion === '4' ? {} : { mqttVersion: form.mqttVersion === '5' ? 5 : 'auto' }),
    } as ConnectionProfile;
  }

  /** What the form held when it was last filled in from a profile: while it still holds that, the user has not typed in it. */
  const shown = ref(JSON.stringify(profileOf()));
  const untouched = (): boolean => JSON.stringify(profileOf()) === shown.value;

  function show(profile: ConnectionProfile, clientIdInUse?: string): void {
    Object.assign(form, {
      name: profile.name,
      amqpUrl: profile.amqpUrl,
      mqttUrl: profile.mqttUrl,
      managementUrl: profile.managementUrl,
      vhost: profile.vhost,
      exchange: profile.exchange,
      mqttClientId: profile.mqttClientId ?? clientIdInUse ?? form.mqttClientId,
      username: profile.username ?? '',
      password: profile.password ?? '',
      caFile: profile.tls?.caFile ?? '',
      certFile: profile.tls?.certFile ?? '',
      keyFile: profile.tls?.keyFile ?? '',
      verify: profile.tls?.verify !== false,
      keepalive: profile.keepaliveSeconds ?? '',
      cleanSession: profile.cleanSession !== false,
      mqttVersion: profile.mqttVersion === undefined || profile.mqttVersion === 4 ? '4' : profile.mqttVersion === 5 ? '5' : 'auto',
    });
    shown.value = JSON.stringify(profileOf());
  }

  /** set by an action of this page that changes the profile in use on purpose ("Connect to the sandbox broker") */
  let followNext = false;
  // The profile in use is shown (passwords as ***; the core puts them back) only while the form holds nothing the user
  // typed, or when this page asked for the change: a Connect elsewhere, or one refused, never rewrites the form.
  watch(
    () => JSON.stringify(app.state?.profile ?? null),
    () => {
      const current = app.state?.profile;
      if (!current || !(followNext || untouched())) return;
      followNext = false;
      show(current, app.state?.mqttClientId);
    },
    // sync: a Connect this page asked for is shown before its promise settles and `followNext` is reset
    { immediate: true, flush: 'sync' },
  );

  async function connectToSandbox(): Promise<void> {
    followNext = true;
    await app.startSandbox();
    // still set when nothing changed (a failed start): the next change from elsewhere must not rewrite the form
    followNext = false;
  }

  async function load(name: string): Promise<void> {
    const loaded = await app.loadProfile(name);
    if (loaded) show(loaded);
  }

  return { form, profileOf, show, load, connectToSandbox };
});
