package org.fhirplug.store;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.context.support.IValidationSupport;
import ca.uhn.fhir.interceptor.api.IInterceptorService;
import ca.uhn.fhir.jpa.api.IDaoRegistry;
import ca.uhn.fhir.jpa.api.config.JpaStorageSettings;
import ca.uhn.fhir.jpa.api.config.ThreadPoolFactoryConfig;
import ca.uhn.fhir.jpa.api.dao.IFhirSystemDao;
import ca.uhn.fhir.jpa.binstore.DatabaseBinaryContentStorageSvcImpl;
import ca.uhn.fhir.jpa.config.HibernatePropertiesProvider;
import ca.uhn.fhir.jpa.config.util.HapiEntityManagerFactoryUtil;
import ca.uhn.fhir.jpa.config.util.ResourceCountCacheUtil;
import ca.uhn.fhir.jpa.dao.FulltextSearchSvcImpl;
import ca.uhn.fhir.jpa.dao.IFulltextSearchSvc;
import ca.uhn.fhir.jpa.dao.search.HSearchSortHelperImpl;
import ca.uhn.fhir.jpa.dao.search.IHSearchSortHelper;
import ca.uhn.fhir.jpa.model.config.PartitionSettings;
import ca.uhn.fhir.jpa.model.config.SubscriptionSettings;
import ca.uhn.fhir.jpa.provider.DaoRegistryResourceSupportedSvc;
import ca.uhn.fhir.jpa.provider.IJpaSystemProvider;
import ca.uhn.fhir.jpa.provider.JpaCapabilityStatementProvider;
import ca.uhn.fhir.jpa.search.DatabaseBackedPagingProvider;
import ca.uhn.fhir.jpa.search.IStaleSearchDeletingSvc;
import ca.uhn.fhir.jpa.search.StaleSearchDeletingSvcImpl;
import ca.uhn.fhir.jpa.subscription.match.deliver.email.IEmailSender;
import ca.uhn.fhir.jpa.util.ResourceCountCache;
import ca.uhn.fhir.narrative2.NullNarrativeGenerator;
import ca.uhn.fhir.rest.api.IResourceSupportedSvc;
import ca.uhn.fhir.rest.server.HardcodedServerAddressStrategy;
import ca.uhn.fhir.rest.server.RestfulServer;
import ca.uhn.fhir.rest.server.provider.ResourceProviderFactory;
import ca.uhn.fhir.rest.server.util.ISearchParamRegistry;
import jakarta.persistence.EntityManagerFactory;
import java.util.HashMap;
import java.util.Map;
import javax.sql.DataSource;
import org.fhirplug.store.syntax.SyntaxConversionInterceptor;
import org.fhirplug.store.tenancy.CallerAssertion;
import org.fhirplug.store.tenancy.TenancyInterceptor;
import org.hibernate.dialect.Dialect;
import org.springframework.beans.factory.annotation.Value;
import org.springframework.beans.factory.config.ConfigurableListableBeanFactory;
import org.springframework.boot.web.servlet.ServletRegistrationBean;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;
import org.springframework.context.annotation.Import;
import org.springframework.context.annotation.Primary;
import org.springframework.orm.jpa.JpaTransactionManager;
import org.springframework.orm.jpa.LocalContainerEntityManagerFactoryBean;

/**
 * The beans HAPI's JPA server expects its host application to supply, configured for life behind
 * the fhirplug proxy. Property names follow the official image's {@code hapi.fhir.*} keys so one
 * application.yaml reads the same in both deployments.
 */
@Configuration
@Import(ThreadPoolFactoryConfig.class)
public class StoreConfig {

	@Value("${hapi.fhir.reuse_cached_search_results_millis:-1}")
	private long reuseCachedSearchResultsMillis;

	@Value("${hapi.fhir.client_id_strategy:ANY}")
	private JpaStorageSettings.ClientIdStrategyEnum clientIdStrategy;

	@Value("${hapi.fhir.enforce_referential_integrity_on_write:true}")
	private boolean integrityOnWrite;

	@Value("${hapi.fhir.enforce_referential_integrity_on_delete:true}")
	private boolean integrityOnDelete;

	@Value("${hapi.fhir.allow_multiple_delete:false}")
	private boolean allowMultipleDelete;

	@Value("${hapi.fhir.expunge_enabled:true}")
	private boolean expungeEnabled;

	@Value("${hapi.fhir.default_page_size:20}")
	private int defaultPageSize;

	@Value("${hapi.fhir.max_page_size:200}")
	private int maxPageSize;

	/**
	 * Absolute references in these bases are this server's own resources. The proxy turns its
	 * public base into the store's address on the way in, so without this HAPI would index such
	 * a reference as external and searches by it would miss.
	 */
	@Value("${hapi.fhir.local_base_urls:http://127.0.0.1:${server.port}/fhir,http://localhost:${server.port}/fhir}")
	private java.util.List<String> localBaseUrls;

	/** Empty: links use the address the request came in on (the proxy rewrites it to its own). */
	@Value("${hapi.fhir.server_address:}")
	private String serverAddress;

	/**
	 * The store's own line of tenancy (see TenancyInterceptor). {@code off} exists for one purpose:
	 * the benchmark that measures what the line costs. Never switch it off in a deployment.
	 */
	@Value("${fhirplug.store.tenancy:on}")
	private String tenancy;

	/** Shared with the proxy, which signs every request's caller with it. */
	@Value("${FHIRPLUG_STORE_SECRET:}")
	private String secret;

	@Value("${spring.jpa.properties.hibernate.dialect:ca.uhn.fhir.jpa.model.dialect.HapiFhirH2Dialect}")
	private String dialect;

	@Bean
	public JpaStorageSettings storageSettings() {
		JpaStorageSettings s = new JpaStorageSettings();
		// Behind a proxy every identical search must hit the database: a 60 s cache would serve
		// a spoke yesterday's queue. Any negative value switches the cache off.
		s.setReuseCachedSearchResultsForMillis(reuseCachedSearchResultsMillis < 0 ? null : reuseCachedSearchResultsMillis);
		// Partners keep their own ids (e.g. the spoke's Task id), so client-assigned ids are allowed.
		s.setResourceClientIdStrategy(clientIdStrategy);
		s.setEnforceReferentialIntegrityOnWrite(integrityOnWrite);
		s.setEnforceReferentialIntegrityOnDelete(integrityOnDelete);
		s.setAllowMultipleDelete(allowMultipleDelete);
		s.setExpungeEnabled(expungeEnabled);
		s.setAllowExternalReferences(true);
		s.setTreatBaseUrlsAsLocal(new java.util.HashSet<>(localBaseUrls));
		return s;
	}

	@Bean
	public PartitionSettings partitionSettings() {
		return new PartitionSettings();
	}

	@Bean
	public SubscriptionSettings subscriptionSettings() {
		return new SubscriptionSettings();
	}

	/** Subscriptions are off; HAPI's delivery factory still insists on a sender. */
	@Bean
	public IEmailSender emailSender() {
		return details -> {};
	}

	@Bean
	public DatabaseBinaryContentStorageSvcImpl binaryStorageSvc() {
		return new DatabaseBinaryContentStorageSvcImpl();
	}

	@Bean
	public IFulltextSearchSvc fullTextSearchSvc() {
		return new FulltextSearchSvcImpl();
	}

	@Bean
	public IStaleSearchDeletingSvc staleSearchDeletingSvc() {
		return new StaleSearchDeletingSvcImpl();
	}

	@Bean
	public DatabaseBackedPagingProvider pagingProvider() {
		DatabaseBackedPagingProvider p = new DatabaseBackedPagingProvider();
		p.setDefaultPageSize(defaultPageSize);
		p.setMaximumPageSize(maxPageSize);
		return p;
	}

	@Bean
	public IResourceSupportedSvc resourceSupportedSvc(IDaoRegistry registry) {
		return new DaoRegistryResourceSupportedSvc(registry);
	}

	@Bean(name = "myResourceCountsCache")
	public ResourceCountCache resourceCountsCache(IFhirSystemDao<?, ?> systemDao) {
		return ResourceCountCacheUtil.newResourceCountCache(systemDao);
	}

	@Bean
	public IHSearchSortHelper hSearchSortHelper(ISearchParamRegistry registry) {
		return new HSearchSortHelperImpl(registry);
	}

	@Primary
	@Bean
	public LocalContainerEntityManagerFactoryBean entityManagerFactory(
			ConfigurableListableBeanFactory beanFactory,
			FhirContext fhirContext,
			JpaStorageSettings storageSettings,
			DataSource dataSource) {
		LocalContainerEntityManagerFactoryBean emf =
				HapiEntityManagerFactoryUtil.newEntityManagerFactory(beanFactory, fhirContext, storageSettings);
		Map<String, Object> props = new HashMap<>();
		props.put("hibernate.dialect", dialect);
		props.put("hibernate.hbm2ddl.auto", "update");
		props.put("hibernate.jdbc.batch_size", "20");
		props.put("hibernate.cache.use_query_cache", "false");
		props.put("hibernate.cache.use_second_level_cache", "false");
		props.put("hibernate.search.enabled", "false");
		props.put("hibernate.archive.scanner", "org.hibernate.boot.archive.scan.internal.DisabledScanner");
		props.put("hibernate.implicit_naming_strategy",
				"org.springframework.boot.orm.jpa.hibernate.SpringImplicitNamingStrategy");
		props.put("hibernate.physical_naming_strategy",
				"org.hibernate.boot.model.naming.CamelCaseToUnderscoresNamingStrategy");
		emf.setPersistenceUnitName("HAPI_PU");
		emf.setJpaPropertyMap(props);
		emf.setDataSource(dataSource);
		return emf;
	}

	@Primary
	@Bean
	public JpaTransactionManager transactionManager(EntityManagerFactory emf) {
		return new JpaTransactionManager(emf);
	}

	@Primary
	@Bean
	public HibernatePropertiesProvider dialectProvider() {
		Dialect d;
		try {
			d = (Dialect) Class.forName(dialect).getDeclaredConstructor().newInstance();
		} catch (ReflectiveOperationException e) {
			throw new IllegalStateException("Unknown hibernate dialect " + dialect, e);
		}
		return new HibernatePropertiesProvider() {
			@Override
			public Dialect getDialect() {
				return d;
			}
		};
	}

	@Bean
	public ServletRegistrationBean<RestfulServer> fhirServlet(
			FhirContext fhirContext,
			ResourceProviderFactory resourceProviders,
			IJpaSystemProvider systemProvider,
			IFhirSystemDao<?, ?> systemDao,
			JpaStorageSettings storageSettings,
			ISearchParamRegistry searchParamRegistry,
			IValidationSupport validationSupport,
			DatabaseBackedPagingProvider pagingProvider,
			IInterceptorService interceptors) {
		// Narratives are the sender's business; generating them costs time on every write.
		fhirContext.setNarrativeGenerator(new NullNarrativeGenerator());
		// One interceptor service for the REST layer and the JPA layer: the tenancy hooks sit on both
		// (who is asking; what a search, a read or a write touches).
		RestfulServer server = new RestfulServer(fhirContext, interceptors);
		if ("off".equalsIgnoreCase(tenancy)) {
			org.slf4j.LoggerFactory.getLogger(StoreConfig.class)
					.warn("fhirplug.store.tenancy=off: the store answers anyone; for benchmarks only");
			interceptors.registerInterceptor(new SyntaxConversionInterceptor(fhirContext, null));
		} else {
			CallerAssertion assertion = new CallerAssertion(secret);
			interceptors.registerInterceptor(new TenancyInterceptor(assertion));
			// XML to JSON (and back) for the proxy, by HAPI's parsers, for the proxy's signed requests only
			interceptors.registerInterceptor(new SyntaxConversionInterceptor(fhirContext, assertion));
		}
		server.registerProviders(resourceProviders.createProviders());
		server.registerProvider(systemProvider);
		server.setServerConformanceProvider(new JpaCapabilityStatementProvider(
				server, systemDao, storageSettings, searchParamRegistry, validationSupport));
		server.setPagingProvider(pagingProvider);
		server.setDefaultPrettyPrint(false);
		if (!serverAddress.isBlank()) {
			server.setServerAddressStrategy(new HardcodedServerAddressStrategy(serverAddress));
		}
		ServletRegistrationBean<RestfulServer> reg = new ServletRegistrationBean<>(server, "/fhir/*");
		reg.setName("fhir");
		reg.setLoadOnStartup(1);
		return reg;
	}
}
