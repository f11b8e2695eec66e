/** A connection profile: the three URLs, the vhost and exchange, credentials, TLS files and MQTT settings. A leaf module. */
/** TLS for amqps://, mqtts://, wss:// and https:// URLs: files the core reads (paths on the machine running the core). */
export interface ProfileTls {
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  /** false accepts any certificate (the UI warns); default true */
  verify?: boolean;
}

export interface ConnectionProfile {
  name: string;
  /** one URL, or several (a cluster's nodes, tried in order for failover) separated by commas or line breaks; same for the other two */
  amqpUrl: string;
  mqttUrl: string;
  managementUrl: string;
  vhost: string;
  /** the exchange the MQTT plugin publishes to */
  exchange: string;
  /** the app's MQTT client id; unset: generated (`bridgescope-` and 8 hex digits) */
  mqttClientId?: string;
  /** used for every URL of the profile (AMQP, MQTT, management); wins over a user name or password inside a URL */
  username?: string;
  password?: string;
  tls?: ProfileTls;
  /** MQTT keepalive (default 30) */
  keepaliveSeconds?: number;
  /** MQTT clean session (default true) */
  cleanSession?: boolean;
  /** MQTT protocol version: 4 = 3.1.1 (default), 5, or 'auto' (5, else 3.1.1) */
  mqttVersion?: 4 | 5 | 'auto';
}
